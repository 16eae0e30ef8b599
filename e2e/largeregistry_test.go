package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// consentCSV writes a consent import of n clients.
func consentCSV(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("address,name,signed,evidence,expires\n")
	for i := range n {
		fmt.Fprintf(&b, "client%06d@clients.example,Chart %d,2026-01-05,intake form,\n", i, i)
	}
	path := filepath.Join(t.TempDir(), "clients.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestStopDuringLargeConsentCopy: a practice imports its client list of
// 100,000 consents, then starts the relay, which copies them into the
// archive in the background; SIGTERM stops it within a second or so in
// the middle of that, and the next start goes on from where it was.
func TestStopDuringLargeConsentCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 100,000 consents")
	}
	csv := consentCSV(t, 100_000)
	r := StartRelay(t, RelayOptions{Quiet: true, Setup: func(r *Relay) {
		if stdout, stderr, code := r.Run(t, "", "consent", "import", csv, "--by", "e2e"); code != 0 {
			t.Fatalf("consent import: exit %d\n%s%s", code, stdout, stderr)
		}
	}})
	for round := range 2 {
		start := time.Now()
		r.Stop(t)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("round %d: the relay took %s to stop after SIGTERM while copying consent events", round, d.Round(time.Millisecond))
		}
		start = time.Now()
		r.Start(t)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("round %d: the relay took %s to start with 100,000 consents in the registry", round, d.Round(time.Millisecond))
		}
	}
	if logs := r.Logs.String(); strings.Contains(logs, "level=ERROR") {
		t.Errorf("errors in the log:\n%s", logs)
	}
}
