package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Required reports whether missing programs must fail tests instead of skipping them.
func Required() bool { return os.Getenv("SEALPOST_E2E") == "require" }

// RequireTools skips (or, under SEALPOST_E2E=require, fails) the test when a
// program is not installed. Each name is a command looked up in PATH, or an
// absolute path.
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if filepath.IsAbs(n) {
			if _, err := os.Stat(n); err != nil {
				missing = append(missing, n)
			}
			continue
		}
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ") + " (Debian: see .ci/run for the packages)"
	if Required() {
		t.Fatalf("SEALPOST_E2E=require but this test %s", msg)
	}
	t.Skipf("skipped: %s; set SEALPOST_E2E=require to make this a failure", msg)
}

// RequireRoot skips (or fails under SEALPOST_E2E=require) when the test needs
// root, e.g. to mount a tmpfs or run a daemon as another user.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if Required() {
		t.Fatalf("SEALPOST_E2E=require but not running as root, needed to %s", why)
	}
	t.Skipf("skipped: needs root to %s", why)
}
