package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// TestExportOnlyVerified: records the relay writes while an export runs
// (after its verification, before its reading) are left out and counted:
// the manifest's chain head and "verified" cover exactly what it holds.
func TestExportOnlyVerified(t *testing.T) {
	for _, tt := range []struct {
		name   string
		filter Filter
		want   int // messages exported
	}{
		{"everything", Filter{}, 3},
		{"one client", Filter{Clients: []string{"anna@client.example"}}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.open(t, 0)
			defer a.Close()
			ctx := context.Background()
			for i := 1; i <= 3; i++ {
				m, body := testMessage(i, "anna@client.example")
				if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
					t.Fatal(err)
				}
			}
			seq, head := a.ChainHead()
			exportVerified = func() {
				m, body := testMessage(4, "anna@client.example")
				if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
					t.Error(err)
				}
				if err := a.RecordEvent(ctx, Event{MessageID: "msg0001", Time: f.clock(), Kind: Delivered, Recipients: []string{"anna@client.example"}}); err != nil {
					t.Error(err)
				}
			}
			defer func() { exportVerified = func() {} }()
			out := filepath.Join(t.TempDir(), "export")
			rep, err := Export(ctx, f.dir, f.priv, out, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Messages != tt.want || rep.HeadSeq != seq || rep.Head != head || !rep.Verified || rep.RecordsAfterHead != 2 {
				t.Errorf("report %+v; want %d messages under head %d, 2 records after it", rep, tt.want, seq)
			}
			var m manifest
			mb, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
			if err := json.Unmarshal(mb, &m); err != nil {
				t.Fatal(err)
			}
			if m.Archive.ChainHeadSeq != seq || m.Archive.RecordsAfterHead != 2 {
				t.Errorf("manifest archive %+v", m.Archive)
			}
			for _, mm := range m.Messages {
				if mm.ID == "msg0004" {
					t.Error("the manifest lists a message written after the verified chain head")
				}
				for _, r := range mm.Recipients {
					if len(r.Delivery) > 0 {
						t.Errorf("%s: a delivery recorded after the verified chain head", mm.ID)
					}
				}
			}
			if _, err := os.Stat(filepath.Join(out, "messages", "msg0004.eml")); err == nil {
				t.Error("the export holds a message written after the verified chain head")
			}
		})
	}
}

// TestPruneNeedsVerify: prune reads the holds from the records' headers;
// when the archive does not verify (here: the header of the hold is
// damaged, so the hold cannot be read), it removes nothing.
func TestPruneNeedsVerify(t *testing.T) {
	for _, tt := range []struct {
		name   string
		damage bool
	}{
		{"verifies", false},
		{"the hold's header damaged", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.open(t, 0)
			defer a.Close()
			ctx := context.Background()
			m, body := testMessage(1, "bob@client.example")
			a.RecordMessage(ctx, m, strings.NewReader(body))
			a.CloseSegment(ctx)
			f.advance(3 * 365 * 24 * time.Hour)
			if _, err := a.Hold(ctx, []string{"bob@client.example"}, "", "", "subpoena"); err != nil {
				t.Fatal(err)
			}
			if tt.damage {
				p := filepath.Join(f.dir, a.segName)
				b, _ := os.ReadFile(p)
				i := bytes.LastIndex(b, []byte(`{"seq":`))
				b[i] = '[' // the header no longer parses; its length is unchanged
				os.WriteFile(p, b, 0o600)
			}
			rep, err := a.Prune(ctx, 365*24*time.Hour, false)
			if tt.damage {
				if err == nil || !strings.Contains(err.Error(), "nothing pruned") {
					t.Fatalf("prune of an archive that does not verify: %+v, %v", rep, err)
				}
			} else if err != nil || len(rep.Removed) != 0 || !strings.Contains(rep.Kept, "under hold") {
				t.Fatalf("prune: %+v, %v", rep, err)
			}
			if _, err := os.Stat(filepath.Join(f.dir, "seg-00000001.log")); err != nil {
				t.Errorf("the held segment is gone: %v", err)
			}
		})
	}
}

// TestVerifyExpecting: records cut off the end of the segment being
// written leave a chain that verifies on its own (nothing seals them yet);
// a chain head kept from an earlier export shows it, as it shows a record
// that is no longer the one seen.
func TestVerifyExpecting(t *testing.T) {
	f := archiveWithRecords(t)
	rep, err := Verify(f.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	head := ChainPoint{Seq: rep.HeadSeq, Hash: rep.Head}
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		expect []ChainPoint
		want   string // "" passes
	}{
		{"untouched", func(*testing.T, string) {}, []ChainPoint{head}, ""},
		{"the newest records cut off", func(t *testing.T, dir string) {
			segs, _ := listSegments(dir)
			p := filepath.Join(dir, segs[len(segs)-1])
			rs := records(t, p)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:rs[len(rs)-2][0]], 0o600)
		}, []ChainPoint{head}, "beyond the chain head"},
		{"a record that is not the one seen", func(*testing.T, string) {}, []ChainPoint{{Seq: head.Seq - 1, Hash: head.Hash}}, "is not the record seen earlier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, f.dir)
			tt.mutate(t, dir)
			_, err := VerifyExpecting(dir, nil, tt.expect)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("verify: %v; want a problem saying %q", err, tt.want)
			}
			if tt.name == "the newest records cut off" {
				if _, err := Verify(dir, nil); err != nil {
					t.Fatalf("without the earlier head the cut is not visible, yet verify failed: %v", err)
				}
			}
		})
	}
}

// TestSealedWithinADay: a segment is sealed once its first record is a day
// old, however little it holds, so no record waits longer than that for a
// seal; after a start, the day counts from the start.
func TestSealedWithinADay(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	recordMessage := func(i int) {
		t.Helper()
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	sealed := func() int {
		t.Helper()
		segs, _ := listSegments(f.dir)
		return len(segs) - 1
	}
	recordMessage(1)
	f.advance(23 * time.Hour)
	recordMessage(2)
	if n := sealed(); n != 0 {
		t.Fatalf("%d segments sealed before a day", n)
	}
	f.advance(2 * time.Hour)
	recordMessage(3)
	// The writer seals right after answering that record.
	testutil.WaitFor(t, "the segment sealed a day after its first record", func() bool { return sealed() == 1 })
	a.Close()
	a = f.open(t, 0)
	recordMessage(4)
	f.advance(25 * time.Hour)
	recordMessage(5)
	a.Close()
	if n := sealed(); n != 2 {
		t.Fatalf("%d segments sealed, want 2 (a day after the restart)", n)
	}
	if _, err := Verify(f.dir, nil); err != nil {
		t.Fatal(err)
	}
}
