package archive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPruneSignature: a prune record is signed with the seal key, so that
// no one without it can remove segments (held ones) and account for them.
// Archives written before prune records were signed still verify: their
// unsigned prune records are warned about, until a seal says prune records
// are signed from then on.
func TestPruneSignature(t *testing.T) {
	ctx := context.Background()
	year := 365 * 24 * time.Hour
	// legacy makes an archive as sealpost wrote it before prune records
	// were signed: two closed segments, the first pruned, and an open one.
	legacy := func(t *testing.T) (*fixture, *Archive) {
		f := newFixture(t)
		a := f.open(t, 0)
		for i := 1; i <= 2; i++ {
			m, body := testMessage(i, "anna@client.example")
			a.RecordMessage(ctx, m, strings.NewReader(body))
			legacyRotate(t, a)
		}
		legacyPrune(t, a, "seg-00000001.log")
		return f, a
	}
	for _, tt := range []struct {
		name     string
		make     func(t *testing.T) string // returns the archive folder
		problem  string                    // "" when it is to verify
		warnings int
	}{
		{"a prune by the relay", func(t *testing.T) string {
			f := archiveWithRecords(t)
			a := f.open(t, 0)
			f.advance(2 * year)
			if rep, err := a.Prune(ctx, year, false); err != nil || len(rep.Removed) != 2 {
				t.Fatalf("prune: %+v %v", rep, err)
			}
			a.Close()
			return f.dir
		}, "", 0},
		{"a forged prune record, unsigned", func(t *testing.T) string {
			f := archiveWithRecords(t)
			forgePrune(t, f.dir, "seg-00000001.log", nil)
			return f.dir
		}, "without the seal key's signature", 0},
		{"a forged prune record signed with another key", func(t *testing.T) string {
			f := archiveWithRecords(t)
			_, other, _ := ed25519.GenerateKey(nil)
			forgePrune(t, f.dir, "seg-00000001.log", other)
			return f.dir
		}, "the prune record (record 16) has a bad signature", 0},
		{"an archive from before: its prune record", func(t *testing.T) string {
			f, a := legacy(t)
			a.Close()
			return f.dir
		}, "", 1},
		{"an archive from before, since sealed and pruned by this version", func(t *testing.T) string {
			f, a := legacy(t)
			a.CloseSegment(ctx)
			f.advance(2 * year)
			if rep, err := a.Prune(ctx, year, false); err != nil || len(rep.Removed) != 2 {
				t.Fatalf("prune: %+v %v", rep, err)
			}
			a.Close()
			return f.dir
		}, "", 0},
		{"an archive from before, since sealed by this version: a forged prune record", func(t *testing.T) string {
			f, a := legacy(t)
			a.CloseSegment(ctx)
			a.Close()
			forgePrune(t, f.dir, "seg-00000002.log", nil)
			return f.dir
		}, "without the seal key's signature", 1},
		// Until this version seals a segment, an unsigned prune record
		// cannot be told from one written before: a warning only.
		{"an archive from before, not sealed since: a forged prune record", func(t *testing.T) string {
			f, a := legacy(t)
			a.Close()
			forgePrune(t, f.dir, "seg-00000002.log", nil)
			return f.dir
		}, "", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.make(t)
			var out bytes.Buffer
			rep, err := verify(dir, &out)
			if tt.problem == "" {
				if err != nil {
					t.Fatalf("verify: %v\n%s", err, out.String())
				}
			} else if !errors.Is(err, errDamaged) || !strings.Contains(out.String(), tt.problem) {
				t.Fatalf("verify: %v, want a problem saying %q\n%s", err, tt.problem, out.String())
			}
			if rep == nil || len(rep.Warnings) != tt.warnings {
				t.Errorf("want %d warnings:\n%s", tt.warnings, out.String())
			}
		})
	}
}

// legacyRotate closes the segment as sealpost did before prune records
// were signed: a v1 seal.
func legacyRotate(t *testing.T, a *Archive) {
	t.Helper()
	err := a.do(context.Background(), func() error {
		h := header{Kind: kindSeal, Segment: a.segName, Last: a.last,
			Sig: hex.EncodeToString(ed25519.Sign(a.sealKey, sealMessage(a.segName, a.last, false)))}
		if err := a.appendBatch([]*appendReq{{h: h}}); err != nil {
			return err
		}
		old := a.seg
		if err := a.newSegmentFile(segNumber(a.segName) + 1); err != nil {
			return err
		}
		return old.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// legacyPrune removes a segment as sealpost did before: an unsigned record.
func legacyPrune(t *testing.T, a *Archive, seg string) {
	t.Helper()
	err := a.do(context.Background(), func() error {
		s, err := summarize(filepath.Join(a.dir, seg))
		if err != nil {
			return err
		}
		if err := a.appendBatch([]*appendReq{{h: header{Kind: kindPrune, Pruned: []prunedSegment{s.pruned}}}}); err != nil {
			return err
		}
		return os.Remove(filepath.Join(a.dir, seg))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// forgePrune removes seg from the (closed) archive in dir, and writes what
// someone without the seal key would: a prune record accounting for it,
// chained to the newest record, signed with key (unsigned when nil).
func forgePrune(t *testing.T, dir, seg string, key ed25519.PrivateKey) {
	t.Helper()
	s, err := summarize(filepath.Join(dir, seg))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, seg)); err != nil {
		t.Fatal(err)
	}
	open := lastSegment(t, dir)
	last, err := lastRecord(open)
	if err != nil { // a segment just started: the newest record is the seal before
		segs, _ := listSegments(dir)
		last, err = lastRecord(filepath.Join(dir, segs[len(segs)-2]))
	}
	if err != nil {
		t.Fatal(err)
	}
	h := header{Seq: last.h.Seq + 1, Kind: kindPrune, Time: last.h.Time, Prev: last.hash, Pruned: []prunedSegment{s.pruned}}
	if key != nil {
		h.Sig = hex.EncodeToString(ed25519.Sign(key, pruneMessage(&h)))
	}
	hb, _ := json.Marshal(&h)
	var rec []byte
	rec = append(rec, recordMagic...)
	rec = binary.BigEndian.AppendUint32(rec, uint32(len(hb)))
	rec = append(rec, hb...)
	rec = binary.BigEndian.AppendUint64(rec, 0)
	sum := sha256.Sum256(hb)
	rec = append(rec, sum[:]...)
	w, err := os.OpenFile(open, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(rec)
	w.Close()
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

func TestPruneAndHold(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	// Three years of segments, one per year; the second year has Bob.
	for year := 0; year < 3; year++ {
		client := "anna@client.example"
		if year == 1 {
			client = "bob@client.example"
		}
		m, body := testMessage(year, client)
		a.RecordMessage(ctx, m, strings.NewReader(body))
		a.CloseSegment(ctx)
		f.advance(365 * 24 * time.Hour)
	}
	id, err := a.Hold(ctx, []string{"bob@client.example"}, "", "", "subpoena")
	if err != nil {
		t.Fatal(err)
	}
	retention := 2*365*24*time.Hour - 24*time.Hour
	rep, err := a.Prune(ctx, retention, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rep.Removed, ",") != "seg-00000001.log" || !strings.Contains(rep.Kept, "under hold "+id) {
		t.Fatalf("prune removed %v, kept %q", rep.Removed, rep.Kept)
	}
	if _, err := verify(f.dir, nil); err != nil {
		t.Fatalf("verify after a prune: %v", err)
	}
	if err := a.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	rep, err = a.Prune(ctx, retention, false)
	if err != nil || strings.Join(rep.Removed, ",") != "seg-00000002.log" {
		t.Fatalf("after release: removed %v, %v", rep.Removed, err)
	}
	a.Close()
	var out bytes.Buffer
	if _, err := verify(f.dir, &out); err != nil {
		t.Fatalf("verify after two prunes: %v\n%s", err, out.String())
	}
	if a2 := f.open(t, 0); a2 != nil {
		a2.Close()
	}
}
