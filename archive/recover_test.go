package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTornFirstRecord: a crash during the first write into a segment
// (right after a seal started it, or while the chain's first record was
// written) leaves a segment with no complete record. The next start sets
// the bytes aside and goes on from the seal before (or starts the chain
// again), as for any torn tail.
func TestTornFirstRecord(t *testing.T) {
	for _, tt := range []struct {
		name string
		// make leaves an archive whose newest segment holds only a torn
		// record, and returns that segment and the records before it
		make  func(t *testing.T, f *fixture) (seg string, before uint64)
		chain string // the kinds of the records in that segment afterwards
	}{
		{"a few bytes after a rollover", func(t *testing.T, f *fixture) (string, uint64) {
			a := f.open(t, 0)
			a.CloseSegment(context.Background())
			n, _ := a.ChainHead()
			a.Close()
			seg := lastSegment(t, f.dir)
			os.WriteFile(seg, []byte("SPR1\x00\x00\x01\x00{\"seq\""), 0o600)
			return seg, n
		}, "torn,message"},
		{"half a record after a rollover", func(t *testing.T, f *fixture) (string, uint64) {
			a := f.open(t, 0)
			a.CloseSegment(context.Background())
			crashed := keepHead(t, f.dir)
			m, body := testMessage(13, "anna@client.example")
			a.RecordMessage(context.Background(), m, strings.NewReader(body))
			n, _ := a.ChainHead()
			a.Close()
			crashed()
			seg := lastSegment(t, f.dir)
			r := records(t, seg)[0]
			os.Truncate(seg, r[1]/2)
			return seg, n - 1
		}, "torn,message"},
		{"the chain's first record", func(t *testing.T, f *fixture) (string, uint64) {
			f.dir = filepath.Join(t.TempDir(), "archive")
			f.open(t, 0).Close()
			// The crash came before the first head file.
			os.Remove(HeadFile(f.dir))
			seg := lastSegment(t, f.dir)
			r := records(t, seg)[0]
			os.Truncate(seg, r[1]/2)
			return seg, 0
		}, "init,torn,message"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := archiveWithRecords(t)
			seg, before := tt.make(t, f)
			if _, err := verify(f.dir, nil); err == nil || !strings.Contains(err.Error(), "torn tail") {
				t.Fatalf("verify before the start: %v; want it to report the torn tail", err)
			}
			if _, err := VerifyWith(f.dir, nil, VerifyOptions{AllowTornTail: true}); err != nil {
				t.Fatalf("verify --allow-torn-tail before the start: %v", err)
			}
			a, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			m, body := testMessage(20, "anna@client.example")
			if err := a.RecordMessage(context.Background(), m, strings.NewReader(body)); err != nil {
				t.Fatal(err)
			}
			a.Close()
			var out bytes.Buffer
			rep, err := verify(f.dir, &out)
			if err != nil {
				t.Fatalf("verify after the start: %v\n%s", err, out.String())
			}
			if want := before + uint64(len(strings.Split(tt.chain, ","))); rep.HeadSeq != want {
				t.Errorf("chain head %d, want %d", rep.HeadSeq, want)
			}
			var kinds []string
			walk(f.dir, func(l located) {
				if l.seg == filepath.Base(seg) {
					kinds = append(kinds, l.h.Kind)
				}
			})
			if got := strings.Join(kinds, ","); got != tt.chain {
				t.Errorf("%s holds %s, want %s", filepath.Base(seg), got, tt.chain)
			}
			if aside, _ := filepath.Glob(filepath.Join(f.dir, "torn", "*.bin")); len(aside) != 1 {
				t.Errorf("%d files set aside, want 1", len(aside))
			}
		})
	}
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segments: %v", err)
	}
	return filepath.Join(dir, segs[len(segs)-1])
}

// TestTornFirstRecordWithoutSeal: a segment with no complete record whose
// segment before is missing or unsealed is damage, not a crash: Open stops.
func TestTornFirstRecordWithoutSeal(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(t *testing.T, dir string)
	}{
		{"the segment before removed", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "seg-00000003.log"))
		}},
		{"the seal before cut off", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "seg-00000003.log")
			rs := records(t, p)
			os.Truncate(p, rs[len(rs)-1][0])
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := archiveWithRecords(t)
			a := f.open(t, 0)
			a.CloseSegment(context.Background())
			a.Close()
			os.WriteFile(lastSegment(t, f.dir), []byte("SPR1\x00\x00"), 0o600)
			tt.mutate(t, f.dir)
			_, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock})
			if err == nil || !strings.Contains(err.Error(), "sealpost archive verify") {
				t.Fatalf("Open: %v; want it to stop and send the admin to verify", err)
			}
		})
	}
}

// TestDamagedLength: a length field damaged in an acknowledged record of
// the open segment makes the records from there on look like a torn tail.
// A torn tail is what a crash leaves in the middle of the last write, with
// no complete record after it: here there are, so Open stops and verify
// reports damage, and nothing is set aside. A torn tail is still set aside.
func TestDamagedLength(t *testing.T) {
	for _, tt := range []struct {
		name    string
		mutate  func(b []byte, r [2]int64) []byte // r: the third record's range
		damaged bool
	}{
		{"header length", func(b []byte, r [2]int64) []byte {
			b[r[0]+5] = 0x0f // about a MB: past the end of the segment
			return b
		}, true},
		{"payload length", func(b []byte, r [2]int64) []byte {
			hl := int64(b[r[0]+6])<<8 | int64(b[r[0]+7])
			b[r[0]+8+hl+3] = 0x01 // 2^32 more
			return b
		}, true},
		{"header length of the first record", func(b []byte, _ [2]int64) []byte {
			b[5] = 0x0f
			return b
		}, true},
		{"a torn tail", func(b []byte, _ [2]int64) []byte {
			return append(b, []byte("SPR1\x00\x00\x02\x00{\"seq\":7,")...)
		}, false},
		{"a torn tail cut in a payload", func(b []byte, r [2]int64) []byte {
			return append(b, b[r[0]:r[1]-50]...)
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.open(t, 0)
			for i := 1; i <= 5; i++ {
				m, body := testMessage(i, "anna@client.example")
				if err := a.RecordMessage(context.Background(), m, strings.NewReader(body)); err != nil {
					t.Fatal(err)
				}
			}
			a.Close()
			seg := filepath.Join(f.dir, "seg-00000001.log")
			b, _ := os.ReadFile(seg)
			b = tt.mutate(b, records(t, seg)[2])
			os.WriteFile(seg, b, 0o600)

			var out bytes.Buffer
			_, verr := VerifyWith(f.dir, &out, VerifyOptions{AllowTornTail: true})
			a, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock})
			if !tt.damaged {
				if verr != nil || err != nil {
					t.Fatalf("a torn tail: verify --allow-torn-tail %v, Open %v\n%s", verr, err, out.String())
				}
				a.Close()
				if _, err := verify(f.dir, nil); err != nil {
					t.Fatalf("verify after setting the tail aside: %v", err)
				}
				return
			}
			if err == nil {
				a.Close()
				t.Fatal("Open set acknowledged records aside as a torn tail")
			}
			if !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "sealpost archive verify") {
				t.Errorf("Open: %v; want it to say the archive is damaged", err)
			}
			if !errors.Is(verr, errDamaged) || !strings.Contains(out.String(), "a complete record follows") {
				t.Errorf("verify: %v\n%s", verr, out.String())
			}
			if now, _ := os.ReadFile(seg); !bytes.Equal(now, b) {
				t.Error("Open changed the damaged segment")
			}
			if aside, _ := filepath.Glob(filepath.Join(f.dir, "torn", "*")); len(aside) > 0 {
				t.Errorf("set aside: %v", aside)
			}
		})
	}
}

// TestMissingKey: the seal and address-hash keys are made with a new
// archive only. Missing from one that holds records, Open stops and says
// to restore the file; nothing is made in its place.
func TestMissingKey(t *testing.T) {
	for _, tt := range []struct {
		name    string
		remove  []string
		records bool
		wantErr string // "" when Open is to work
	}{
		{"seal.key", []string{"seal.key"}, true, "seal.key is missing"},
		{"address-hash.key", []string{"address-hash.key"}, true, "address-hash.key is missing"},
		{"both", []string{"seal.key", "address-hash.key"}, true, "seal.key is missing"},
		{"a new archive", nil, false, ""},
		{"a first start that stopped after seal.key", []string{"seal.pub"}, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if tt.records {
				f = archiveWithRecords(t)
			} else if tt.remove != nil { // seal.key and seal.pub, no segment, no address-hash.key
				os.MkdirAll(f.dir, 0o700)
				if _, err := loadOrMakeSealKey(f.dir, true); err != nil {
					t.Fatal(err)
				}
			}
			pub, _ := os.ReadFile(filepath.Join(f.dir, "seal.pub"))
			for _, name := range tt.remove {
				if err := os.Remove(filepath.Join(f.dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			a, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				a.Close()
				if _, err := verify(f.dir, nil); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				a.Close()
				t.Fatal("Open made a new key for an archive that holds records")
			}
			if !errors.Is(err, errKeyMissing) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "restore it from a backup") {
				t.Errorf("Open: %v; want it to name the file and say to restore it", err)
			}
			for _, name := range tt.remove {
				if _, err := os.Stat(filepath.Join(f.dir, name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s was made again", name)
				}
			}
			if now, _ := os.ReadFile(filepath.Join(f.dir, "seal.pub")); !bytes.Equal(now, pub) {
				t.Error("seal.pub changed")
			}
			if _, err := verify(f.dir, nil); err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}
}

// TestTornTail: a crash in the middle of a record leaves a torn tail; the
// next start sets it aside and records that, and nothing complete is lost.
func TestTornTail(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		m, body := testMessage(i, "anna@client.example")
		a.RecordMessage(ctx, m, strings.NewReader(body))
	}
	a.Close()
	seg := filepath.Join(f.dir, "seg-00000001.log")
	b, _ := os.ReadFile(seg)
	last := records(t, seg)[5]
	torn := b[last[0] : last[0]+(last[1]-last[0])/2]
	fh, _ := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	fh.Write(torn)
	fh.Close()

	a = f.open(t, 0)
	m, body := testMessage(6, "anna@client.example")
	if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	aside, _ := filepath.Glob(filepath.Join(f.dir, "torn", "*.bin"))
	if len(aside) != 1 {
		t.Fatalf("%d files set aside", len(aside))
	}
	if got, _ := os.ReadFile(aside[0]); !bytes.Equal(got, torn) {
		t.Error("the set-aside bytes are not the torn tail")
	}
	if _, err := verify(f.dir, nil); err != nil {
		t.Fatalf("verify after recovery: %v", err)
	}
	var kinds []string
	walk(f.dir, func(l located) { kinds = append(kinds, l.h.Kind) })
	if strings.Join(kinds, ",") != "init,message,message,message,message,message,torn,message" {
		t.Errorf("chain %v", kinds)
	}
}
