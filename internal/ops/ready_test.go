package ops

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fakeProvider struct {
	lastOK time.Time
	probe  error
	probes int
}

func (p *fakeProvider) UpstreamLastOK() time.Time { return p.lastOK }

func (p *fakeProvider) ProbeUpstream(context.Context) error {
	p.probes++
	return p.probe
}

// TestReadiness: ready while the folders take a write and the provider was
// reached recently; a provider not reached for a while is probed, and one
// not reached for longer makes it not ready; answers are kept a few
// seconds.
func TestReadiness(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	p := &fakeProvider{lastOK: now.Add(-time.Minute)}
	r := NewReadiness(p, dir)
	r.now = func() time.Time { return now }
	ctx := context.Background()
	if problems := r.Check(ctx); len(problems) != 0 || p.probes != 0 {
		t.Fatalf("fresh: %v, %d probes", problems, p.probes)
	}

	now = now.Add(5 * time.Minute)
	p.probe = errors.New("connection refused")
	if problems := r.Check(ctx); len(problems) != 0 || p.probes != 1 {
		t.Errorf("not reached for 6 minutes: %v, %d probes; want a probe and still ready", problems, p.probes)
	}
	now = now.Add(2 * time.Second)
	r.Check(ctx)
	if p.probes != 1 {
		t.Errorf("asked again within seconds: %d probes", p.probes)
	}

	now = now.Add(10 * time.Minute)
	gone := filepath.Join(dir, "gone")
	r.dirs = append(r.dirs, gone)
	problems := r.Check(ctx)
	if len(problems) != 2 || !strings.Contains(problems[0], gone+" is not writable") ||
		!strings.Contains(problems[1], "the provider was not reached in the last 10m0s: connection refused") {
		t.Errorf("a folder gone and the provider away: %q", problems)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the probe left %d files behind", len(entries))
	}
}
