package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHealthcheck: the container's HEALTHCHECK (no shell, no curl in the
// image) asks /healthz where [metrics] listen says, through loopback for
// 0.0.0.0; anything but 200, or nobody answering, fails with the reason.
func TestHealthcheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var healthy atomic.Bool
	healthy.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			http.Error(w, "stopping", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not ready:\n- the provider was not reached", http.StatusServiceUnavailable)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()
	port := l.Addr().(*net.TCPAddr).Port

	cfg := writeConfig(t, fmt.Sprintf("[metrics]\nlisten = \"0.0.0.0:%d\"\n", port))
	out, errOut, code := runCLI(t, "", "healthcheck", "-c", cfg)
	if code != 0 || out != fmt.Sprintf("http://127.0.0.1:%d/healthz: ok\n", port) {
		t.Errorf("healthy: exit %d, %q %q", code, out, errOut)
	}
	_, errOut, code = runCLI(t, "", "healthcheck", "--ready", "-c", cfg)
	if code != 1 || !strings.Contains(errOut, "answered 503 Service Unavailable: not ready: - the provider was not reached") {
		t.Errorf("not ready: exit %d, %q", code, errOut)
	}
	healthy.Store(false)
	if _, _, code = runCLI(t, "", "healthcheck", "-c", cfg); code != 1 {
		t.Errorf("unhealthy: exit %d", code)
	}
	srv.Close()
	_, errOut, code = runCLI(t, "", "healthcheck", "-c", cfg)
	if code != 1 || !strings.Contains(errOut, "the relay does not answer at http://127.0.0.1:") {
		t.Errorf("nobody listening: exit %d, %q", code, errOut)
	}
	_, errOut, code = runCLI(t, "", "healthcheck", "-c", writeConfig(t, ""))
	if code != 1 || !strings.Contains(errOut, "[metrics] listen is empty") {
		t.Errorf("no metrics listener: exit %d, %q", code, errOut)
	}
}
