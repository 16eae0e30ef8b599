package main

import (
	"runtime"
	"strings"
	"testing"
)

// TestVersion: what a release build was stamped with (deploy/Makefile's
// -ldflags), else what Go recorded, and always the Go version.
func TestVersion(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "", ""
	out, _, code := runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "sealpost ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version: exit %d, %q", code, out)
	}
	version, commit = "0.2.0", "0123abc"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, _, code = runCLI(t, "", args...)
		if want := "sealpost 0.2.0 (commit 0123abc, " + runtime.Version() + ")\n"; code != 0 || out != want {
			t.Errorf("%v: exit %d, %q, want %q", args, code, out, want)
		}
	}
}
