package e2e

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/testutil"
)

// TestConsentCopyMemory: a practice imports its client list of 100,000
// consents while the relay runs; the relay copies them into the archive
// within 30 s, and its resident memory stays under 60 MB all along
// (issue 20's goals), so a small server is not pushed into swap or the
// OOM killer by an intake day.
func TestConsentCopyMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 100,000 consents")
	}
	const clients = 100_000
	csv := consentCSV(t, clients)
	r := StartRelay(t, RelayOptions{Quiet: true})
	idle, _ := procStats(r.Pid())
	if stdout, stderr, code := r.Run(t, "", "consent", "import", csv, "--by", "e2e"); code != 0 {
		t.Fatalf("consent import: exit %d\n%s%s", code, stdout, stderr)
	}
	imported := time.Now()
	_, cpu0 := procStats(r.Pid())
	// The chain's init record, the import's activity record and one record
	// per consent (a segment's seal, if one falls in, may count for the
	// last of them: it does not change the peak).
	want := uint64(clients + 2)
	// Read from the head file, not /metrics: a scrape every few
	// milliseconds would cost the relay more memory than it measures.
	head := archive.HeadFile(filepath.Join(r.DataDir, "archive"))
	testutil.WaitWithin(t, 60*time.Second, "the consents copied into the archive", func() bool {
		return headSeq(t, head) >= want
	})
	copied := time.Since(imported)
	peak, cpu1 := procStats(r.Pid())
	t.Logf("idle %.1f MB; copying %d consents: %.1f s, %.2f s of CPU, peak RSS %.1f MB",
		float64(idle)/(1<<20), clients, copied.Seconds(), (cpu1 - cpu0).Seconds(), float64(peak)/(1<<20))
	if copied > 30*time.Second {
		t.Errorf("the relay took %s to copy %d consents into the archive; the goal is 30 s", copied.Round(time.Second), clients)
	}
	if peak > 60<<20 {
		t.Errorf("the relay's peak RSS was %.1f MB while it copied %d consents; the goal is under 60 MB", float64(peak)/(1<<20), clients)
	}
}

// headSeq is the newest record number the archive's head file names (its
// two slots are JSON objects padded with spaces, ARCHITECTURE.md's "The
// archive on disk"); 0 before it exists.
func headSeq(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var newest uint64
	dec := json.NewDecoder(strings.NewReader(string(b)))
	for {
		var slot struct {
			Seq uint64 `json:"seq"`
		}
		if err := dec.Decode(&slot); err != nil {
			return newest // the end, or a slot being written: the other one counts
		}
		newest = max(newest, slot.Seq)
	}
}
