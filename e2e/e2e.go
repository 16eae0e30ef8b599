// Package e2e holds the tests that drive sealpost with real programs from
// Debian: swaks, Postfix, Dovecot, gpg, sq, rnp, chromium, Thunderbird under Xvfb,
// PostgreSQL. Each test needs its
// programs through testutil.RequireTools, which skips with a clear message when one is
// missing, and fails instead when SEALPOST_E2E=require (as in CI).
package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildOut  []byte
)

// Sealpost builds the sealpost binary once per test process and returns its path.
func Sealpost(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sealpost-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "sealpost")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/sealpost")
		cmd.Dir = RepoRoot()
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build sealpost: %v\n%s", buildErr, buildOut)
	}
	return buildPath
}

// RepoRoot is the repository's top folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}
