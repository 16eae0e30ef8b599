package archive

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestActivity: changes go into the chain; who, what, the object and
// where from are found without the key, the addresses they concern only
// as hashes; verify passes.
func TestActivity(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	defer a.Close()
	ctx := context.Background()
	for _, act := range []Activity{
		{Who: "office", Role: "admin", What: "consent-recorded", Object: "17", From: "192.168.1.20", Addresses: []string{"dora@client.example"}},
		{Who: "anna", Role: "therapist", What: "queue-drop", Object: "Q1ANNA", From: "192.168.1.31"},
	} {
		if err := a.RecordActivity(ctx, act); err != nil {
			t.Fatal(err)
		}
		f.advance(time.Minute)
	}
	a.Close()
	got, err := FindActivity(f.dir, time.Time{})
	if err != nil || len(got) != 2 {
		t.Fatalf("FindActivity: %+v %v", got, err)
	}
	if g := got[0]; g.Who != "office" || g.What != "consent-recorded" || g.Object != "17" || g.From != "192.168.1.20" || g.Time.IsZero() {
		t.Errorf("first: %+v", g)
	}
	if got, _ := FindActivity(f.dir, got[1].Time); len(got) != 1 || got[0].Who != "anna" {
		t.Errorf("since the second: %+v", got)
	}
	segs, _ := listSegments(f.dir)
	for _, s := range segs {
		if raw, _ := os.ReadFile(filepath.Join(f.dir, s)); bytes.Contains(raw, []byte("dora@client.example")) {
			t.Errorf("%s names the client in clear", s)
		}
	}
	if rep, err := VerifyWith(f.dir, io.Discard, VerifyOptions{NoHead: true}); err != nil || len(rep.Problems) > 0 {
		t.Errorf("verify: %+v %v", rep, err)
	}
}
