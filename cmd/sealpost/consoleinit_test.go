package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/setup"
)

// TestInitTurnsConsoleOn: the configuration sealpost init writes serves the
// console on loopback, and init says where it is, how to log in and not to
// expose it.
func TestInitTurnsConsoleOn(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc")
	out, errOut, code := runCLI(t, "", "init", "--dir", dir, "--domain", "practice.example")
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"The practice console is at https://127.0.0.1:8443/", "[[console.admin]]", "Never expose it to the internet"} {
		if !strings.Contains(out, want) {
			t.Errorf("init's output lacks %q:\n%s", want, out)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, setup.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Console.Listen != "127.0.0.1:8443" {
		t.Errorf("[console] listen = %q, want 127.0.0.1:8443", cfg.Console.Listen)
	}
}
