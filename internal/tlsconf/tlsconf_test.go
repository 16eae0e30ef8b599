package tlsconf

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"
)

// TestServerTLSOnlyAEAD: every listener gets its settings here, so this is
// where TLS 1.2's suites are pinned to ECDHE with AES-GCM or ChaCha20.
func TestServerTLSOnlyAEAD(t *testing.T) {
	cert, key, err := EnsureLocalCertificate(t.TempDir(), "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	conf, err := ServerTLS(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if conf.MinVersion != tls.VersionTLS12 {
		t.Errorf("min version %x, want TLS 1.2", conf.MinVersion)
	}
	if len(conf.CipherSuites) == 0 {
		t.Fatal("no suites set: Go's defaults include CBC with SHA-1")
	}
	for _, id := range conf.CipherSuites {
		name := tls.CipherSuiteName(id)
		aead := strings.Contains(name, "_GCM_") || strings.HasSuffix(name, "_CHACHA20_POLY1305_SHA256")
		if !aead || !strings.HasPrefix(name, "TLS_ECDHE_") {
			t.Errorf("suite %s is offered", name)
		}
	}
}
