package archive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// cutArchive is an archive of five segments, the first four sealed:
//
//	seg-1: records 1-6 (init, 4 messages, seal)   seg-4: records 17-21
//	seg-2: records 7-11                           seg-5: records 22-25, not sealed
//	seg-3: records 12-16
//
// with copies of its head file as it was after record 13 and after
// record 24 (before the last write).
type cutArchive struct {
	*fixture
	after13, after24 []byte
	point13          ChainPoint
}

func newCutArchive(t *testing.T) *cutArchive {
	t.Helper()
	c := &cutArchive{fixture: newFixture(t)}
	a := c.open(t, 0)
	ctx := context.Background()
	for i := 1; i <= 20; i++ {
		if i == 20 {
			c.after24 = mustRead(filepath.Dir(c.dir), filepath.Base(HeadFile(c.dir)))
		}
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			c.after13 = mustRead(filepath.Dir(c.dir), filepath.Base(HeadFile(c.dir)))
			c.point13.Seq, c.point13.Hash = a.ChainHead()
		}
		if i%4 == 0 && i < 20 {
			if err := a.CloseSegment(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if seq, _ := a.ChainHead(); seq != 25 {
		t.Fatalf("chain head %d, the cases below want 25", seq)
	}
	a.Close()
	return c
}

// copyArchive copies the archive folder and its head file next to it.
func copyArchive(t *testing.T, dir string) string {
	t.Helper()
	dst := copyDir(t, dir)
	if b, err := os.ReadFile(HeadFile(dir)); err == nil {
		os.WriteFile(HeadFile(dst), b, 0o600)
	}
	return dst
}

// cutRecords keeps the first keep records of a segment.
func cutRecords(t *testing.T, dir, seg string, keep int) {
	t.Helper()
	p := filepath.Join(dir, seg)
	rs := records(t, p)
	if err := os.Truncate(p, rs[keep-1][1]); err != nil {
		t.Fatal(err)
	}
}

func seg(n int) string { return segName(n) }

// rechain removes record drop (counted from 0) of the segment at path and
// chains the records after it again, as anyone can without a key while
// they are not sealed; with again, the last record is written once more
// at the end, so that the chain is as long as it was.
func rechain(t *testing.T, path string, drop int, again bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rs := records(t, path)
	var out []byte
	var prev string
	var seq uint64
	write := func(h header, payload []byte) {
		seq++
		h.Seq, h.Prev = seq, prev
		hb, err := json.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(hb)
		out = append(out, recordMagic...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(hb)))
		out = append(out, hb...)
		out = binary.BigEndian.AppendUint64(out, uint64(len(payload)))
		out = append(out, payload...)
		out = append(out, sum[:]...)
		prev = hex.EncodeToString(sum[:])
	}
	var last header
	var lastPayload []byte
	for i, r := range rs {
		rec := b[r[0]:r[1]]
		hl := binary.BigEndian.Uint32(rec[4:8])
		var h header
		if err := json.Unmarshal(rec[8:8+hl], &h); err != nil {
			t.Fatal(err)
		}
		payload := rec[8+hl+8 : len(rec)-32]
		if i == 0 {
			seq, prev = h.Seq-1, h.Prev
		}
		if i != drop {
			write(h, payload)
			last, lastPayload = h, payload
		}
	}
	if again {
		write(last, lastPayload)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// slotOf is the slot of the head file of the archive in dir that holds
// record seq.
func slotOf(t *testing.T, dir string, seq uint64) int {
	t.Helper()
	slots, err := readHead(HeadFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range slots {
		if h != nil && h.Seq == seq {
			return i
		}
	}
	t.Fatalf("no slot of the head file holds record %d", seq)
	return 0
}

// headOf is the newest head in the head file of the archive in dir.
func headOf(t *testing.T, dir string) *headFile {
	t.Helper()
	slots, err := readHead(HeadFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	return slots.highest()
}

// TestCutOffTheEnd: records cut off the end of the archive (at a record
// boundary, inside a record, whole segment files at the end or in the
// middle) fail verification and say how many records are missing; the
// head file next to the archive says how far the chain had reached. The
// head file only says "at least this far": an older copy of it, or one
// left behind by a crash between the archive's write and its own, passes
// as long as the chain goes on past it. A head file not signed with the
// seal key counts for nothing.
func TestCutOffTheEnd(t *testing.T) {
	c := newCutArchive(t)
	otherKey := func(t *testing.T, dir string) {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		h := headOf(t, dir)
		ts, _ := time.Parse(time.RFC3339Nano, h.Time)
		if err := replaceHead(HeadFile(dir), signHead(key, h.Seq+5, h.Hash, h.Segment, ts)); err != nil {
			t.Fatal(err)
		}
	}
	putHead := func(b []byte) func(*testing.T, string) {
		return func(t *testing.T, dir string) { os.WriteFile(HeadFile(dir), b, 0o600) }
	}
	remove := func(names ...string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			for _, n := range names {
				if err := os.Remove(filepath.Join(dir, n)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	removeHead := func(t *testing.T, dir string) {
		if err := os.Remove(HeadFile(dir)); err != nil {
			t.Fatal(err)
		}
	}
	both := func(fs ...func(*testing.T, string)) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			for _, f := range fs {
				f(t, dir)
			}
		}
	}
	tests := []struct {
		name    string
		mutate  func(t *testing.T, dir string)
		opts    VerifyOptions
		wantErr string // "" passes
		wantOut string
	}{
		{"untouched", func(*testing.T, string) {}, VerifyOptions{}, "",
			"says the chain reached record 25: it does, and ends there"},
		{"cut at a record boundary", func(t *testing.T, dir string) { cutRecords(t, dir, seg(5), 1) }, VerifyOptions{},
			"3 records are missing from the end: the head file says the chain reached record 25", "the archive ends at 22"},
		{"cut inside a record", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg(5))
			rs := records(t, p)
			os.Truncate(p, rs[3][0]+(rs[3][1]-rs[3][0])/2)
		}, VerifyOptions{}, "1 record is missing from the end", "a torn tail"},
		{"cut inside a record, torn tails allowed", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg(5))
			rs := records(t, p)
			os.Truncate(p, rs[3][0]+(rs[3][1]-rs[3][0])/2)
		}, VerifyOptions{AllowTornTail: true}, "1 record is missing from the end", "WARN seg-00000005.log"},
		{"a crash in the middle of a write", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg(5))
			b, _ := os.ReadFile(p)
			rs := records(t, p)
			os.WriteFile(p, append(b, b[rs[3][0]:rs[3][1]-40]...), 0o600)
		}, VerifyOptions{}, "are not a whole record: a torn tail", ""},
		{"a crash in the middle of a write, torn tails allowed", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg(5))
			b, _ := os.ReadFile(p)
			rs := records(t, p)
			os.WriteFile(p, append(b, b[rs[3][0]:rs[3][1]-40]...), 0o600)
		}, VerifyOptions{AllowTornTail: true}, "", "WARN seg-00000005.log"},
		// Records not sealed yet can be re-chained without any key: only
		// the head file's record shows it.
		{"a record removed from the open segment, the chain recomputed after it", func(t *testing.T, dir string) {
			rechain(t, filepath.Join(dir, seg(5)), 1, false)
		}, VerifyOptions{}, "1 record is missing from the end", ""},
		{"a record removed from the open segment, the chain recomputed and made up to length", func(t *testing.T, dir string) {
			rechain(t, filepath.Join(dir, seg(5)), 1, true)
		}, VerifyOptions{}, "record 25 is not the record the head file names", ""},
		{"the newest segment file deleted", remove(seg(5)), VerifyOptions{},
			"4 records are missing from the end", "seg-00000005.log, which the head file names, is missing"},
		{"the newest segment file emptied", func(t *testing.T, dir string) { os.Truncate(filepath.Join(dir, seg(5)), 0) }, VerifyOptions{},
			"4 records are missing from the end", "the archive ends at 21"},
		{"sealed segments deleted at the end", remove(seg(3), seg(4), seg(5)), VerifyOptions{},
			"14 records are missing from the end", "the archive ends at 11"},
		{"a segment deleted in the middle", remove(seg(3)), VerifyOptions{},
			"segment seg-00000003.log is missing before it", "record 17 follows record 11: 5 records are missing, 12 to 16"},
		{"a segment deleted in the middle, the later ones renumbered", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, seg(3)))
			os.Rename(filepath.Join(dir, seg(4)), filepath.Join(dir, seg(3)))
			os.Rename(filepath.Join(dir, seg(5)), filepath.Join(dir, seg(4)))
		}, VerifyOptions{}, "record 25 is here, but the head file says it is in seg-00000005.log", "record 17 follows record 11"},
		{"the head file left behind by a crash between the two writes", putHead(c.after24), VerifyOptions{}, "",
			"goes on 1 record(s) past it"},
		{"the head file rolled back to an older copy", putHead(c.after13), VerifyOptions{}, "",
			"goes on 12 record(s) past it"},
		{"the head file rolled back, the chain cut before its record", both(putHead(c.after13), remove(seg(3), seg(4), seg(5))), VerifyOptions{},
			"2 records are missing from the end: the head file says the chain reached record 13", ""},
		// What an older head file cannot show: it says "at least this far".
		{"the head file rolled back, the chain cut after its record", both(putHead(c.after13), remove(seg(4), seg(5))), VerifyOptions{}, "",
			"goes on 3 record(s) past it"},
		{"a head file forged with another key", otherKey, VerifyOptions{},
			"the head file", "not signed with this archive's seal key"},
		{"a crash while the head file was written (its newest slot torn)", func(t *testing.T, dir string) {
			slot := slotOf(t, dir, 25)
			f, _ := os.OpenFile(HeadFile(dir), os.O_WRONLY, 0)
			// A slot's head is in one sector: a crash leaves the old one,
			// the new one, or (on some disks) a sector that does not read.
			f.WriteAt(make([]byte, 512), int64(slot)*headSlot)
			f.Close()
		}, VerifyOptions{}, "", "says the chain reached record 24; it goes on 1 record(s) past it"},
		{"a forged slot beside the genuine one", func(t *testing.T, dir string) {
			_, key, _ := ed25519.GenerateKey(rand.Reader)
			h := headOf(t, dir)
			ts, _ := time.Parse(time.RFC3339Nano, h.Time)
			writeHeadSlot(HeadFile(dir), 1-slotOf(t, dir, 25), signHead(key, 30, h.Hash, h.Segment, ts))
		}, VerifyOptions{}, "", "WARN the head file"},
		{"no head file (a copy of the archive folder)", removeHead, VerifyOptions{}, "",
			"The end of the chain is not checked: there is no head file"},
		{"no head file, the end cut off", both(removeHead, remove(seg(5))), VerifyOptions{}, "",
			"The end of the chain is not checked"},
		{"the head file given apart", func(t *testing.T, dir string) {
			os.Rename(HeadFile(dir), filepath.Join(filepath.Dir(dir), "given-apart"))
			os.Remove(filepath.Join(dir, seg(5)))
		}, VerifyOptions{HeadFile: "given-apart"}, "4 records are missing from the end", ""},
		{"the head file given apart as its newest line", func(t *testing.T, dir string) {
			line := strings.TrimSpace(string(mustRead(filepath.Dir(dir), "archive-head")[slotOf(t, dir, 25)*headSlot:][:headSlot]))
			os.WriteFile(filepath.Join(filepath.Dir(dir), "given-apart"), []byte(line+"\n"), 0o600)
			os.Remove(HeadFile(dir))
			cutRecords(t, dir, seg(5), 2)
		}, VerifyOptions{HeadFile: "given-apart"}, "2 records are missing from the end", ""},
		{"no head file, a chain head seen earlier", removeHead, VerifyOptions{Expect: []ChainPoint{c.point13}}, "", ""},
		{"the head file ignored (--no-head)", remove(seg(5)), VerifyOptions{NoHead: true}, "",
			"The end of the chain is not checked (no head file)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyArchive(t, c.dir)
			if tt.opts.HeadFile != "" {
				tt.opts.HeadFile = filepath.Join(filepath.Dir(dir), tt.opts.HeadFile)
			}
			tt.mutate(t, dir)
			var out bytes.Buffer
			rep, err := VerifyWith(dir, &out, tt.opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("verify: %v\n%s", err, out.String())
			case tt.wantErr != "" && !errors.Is(err, errDamaged):
				t.Fatalf("verify passed; want %q\n%s", tt.wantErr, out.String())
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("verify: %v\nwant the first problem to say %q", err, tt.wantErr)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("the report does not say %q:\n%s", tt.wantOut, out.String())
			}
			if strings.HasPrefix(tt.wantErr, "1 record") || strings.Contains(tt.wantErr, "records are missing") {
				if rep.Missing == 0 {
					t.Errorf("report: %d missing", rep.Missing)
				}
			}
			if tt.wantErr == "" && strings.Contains(tt.wantOut, "not checked") == rep.EndChecked {
				t.Errorf("report: end checked %v", rep.EndChecked)
			}
		})
	}
}

// TestOpenComparesHead: the relay's start compares the chain with the head
// file before it writes anything. Records cut off the end stop it (writing
// a new head file would cover the cut up), and so does a head file not
// signed with the seal key; a crash (a torn tail, a head file one write
// behind) does not, nor an older copy of the head file, nor an archive
// from before head files, which gets one. After a stop, moving the head
// file away starts the archive again from what is there.
func TestOpenComparesHead(t *testing.T) {
	c := newCutArchive(t)
	sealKey := func(t *testing.T, dir string) ed25519.PrivateKey {
		k, err := loadOrMakeSealKey(dir, false)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	tests := []struct {
		name    string
		mutate  func(t *testing.T, dir string)
		wantErr string // "" starts
		head    uint64 // the head file's record after a start
	}{
		{"untouched", func(*testing.T, string) {}, "", 25},
		{"cut at a record boundary", func(t *testing.T, dir string) { cutRecords(t, dir, seg(5), 1) }, "3 records are missing from the end", 0},
		{"cut inside a record", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg(5))
			rs := records(t, p)
			os.Truncate(p, rs[3][0]+10)
		}, "1 record is missing from the end", 0},
		{"the newest segment file deleted", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, seg(5))) }, "4 records are missing from the end", 0},
		{"sealed segments deleted at the end", func(t *testing.T, dir string) {
			for _, n := range []int{3, 4, 5} {
				os.Remove(filepath.Join(dir, seg(n)))
			}
		}, "14 records are missing from the end", 0},
		{"every segment deleted", func(t *testing.T, dir string) {
			for n := 1; n <= 5; n++ {
				os.Remove(filepath.Join(dir, seg(n)))
			}
		}, "holds no record, but the head file", 0},
		{"a record removed from the open segment, the chain recomputed", func(t *testing.T, dir string) {
			rechain(t, filepath.Join(dir, seg(5)), 1, true)
		}, "is not the record the head file", 0},
		{"the chain rewritten at the head file's record", func(t *testing.T, dir string) {
			h := headOf(t, dir)
			ts, _ := time.Parse(time.RFC3339Nano, h.Time)
			replaceHead(HeadFile(dir), signHead(sealKey(t, dir), h.Seq, strings.Repeat("ab", 32), h.Segment, ts))
		}, "is not the record the head file", 0},
		{"a head file forged with another key", func(t *testing.T, dir string) {
			_, key, _ := ed25519.GenerateKey(rand.Reader)
			replaceHead(HeadFile(dir), signHead(key, 40, strings.Repeat("ab", 32), seg(6), time.Now()))
		}, "not signed with this archive's seal key", 0},
		{"a crash between the archive's write and the head file's", func(t *testing.T, dir string) {
			os.WriteFile(HeadFile(dir), c.after24, 0o600)
		}, "", 25},
		{"a crash in the middle of a write", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg(5))
			b, _ := os.ReadFile(p)
			rs := records(t, p)
			os.WriteFile(p, append(b, b[rs[3][0]:rs[3][1]-40]...), 0o600)
		}, "", 26}, // the torn tail's record
		{"an older copy of the head file", func(t *testing.T, dir string) {
			os.WriteFile(HeadFile(dir), c.after13, 0o600)
		}, "", 25},
		{"an archive from before head files", func(t *testing.T, dir string) { os.Remove(HeadFile(dir)) }, "", 25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyArchive(t, c.dir)
			tt.mutate(t, dir)
			before := snapshot(t, dir)
			a, err := Open(Options{Dir: dir, PublicKey: c.pub, Now: c.clock})
			if tt.wantErr != "" {
				if err == nil {
					a.Close()
					t.Fatalf("Open started; want it to stop: %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "sealpost archive verify") {
					t.Errorf("Open: %v\nwant it to say %q and send the admin to verify", err, tt.wantErr)
				}
				if after := snapshot(t, dir); after != before {
					t.Errorf("Open wrote before it stopped:\n%s\nwas\n%s", after, before)
				}
				// The way on, after an admin has looked: keep the head
				// file elsewhere, and start from what is there.
				if err := os.Rename(HeadFile(dir), filepath.Join(t.TempDir(), "kept")); err != nil {
					t.Fatal(err)
				}
				if a, err = Open(Options{Dir: dir, PublicKey: c.pub, Now: c.clock}); err != nil {
					t.Fatalf("Open with the head file moved away: %v", err)
				}
				a.Close()
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			a.Close()
			if h := headOf(t, dir); h.Seq != tt.head {
				t.Fatalf("head file after the start: %+v; want record %d", h, tt.head)
			}
			var out bytes.Buffer
			rep, err := verify(dir, &out)
			if err != nil || !rep.EndChecked || rep.HeadFileSeq != rep.HeadSeq {
				t.Fatalf("verify after the start: %v, end checked %v\n%s", err, rep != nil && rep.EndChecked, out.String())
			}
		})
	}
}

// snapshot describes the files of an archive and its head file.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{dir, filepath.Dir(dir)} {
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			sum := sha256.Sum256(mustRead(p, e.Name()))
			fmt.Fprintf(&b, "%s %x\n", e.Name(), sum[:8])
		}
	}
	return b.String()
}

// TestHeadAcrossPruneAndKeyChange: what an archive legitimately goes
// through keeps verifying against its head file: prune (segments removed
// under the retention, recorded in the chain), a change of archive key,
// and an older head file that names a record pruned since.
func TestHeadAcrossPruneAndKeyChange(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.open(t, 0)
	var oldest []byte
	for year := 0; year < 3; year++ {
		m, body := testMessage(year, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if year == 0 {
			oldest = mustRead(f.dataDir, "archive-head")
		}
		a.CloseSegment(ctx)
		f.advance(365 * 24 * time.Hour)
	}
	rep, err := a.Prune(ctx, 2*365*24*time.Hour-24*time.Hour, false)
	if err != nil || len(rep.Removed) == 0 || rep.Removed[0] != seg(1) {
		t.Fatalf("prune: %+v, %v", rep, err)
	}
	a.Close()
	newPub, _ := newKeys(t, "Archive Two")
	a, err = Open(Options{Dir: f.dir, PublicKey: newPub, Now: f.clock})
	if err != nil {
		t.Fatalf("Open after a prune with a new archive key: %v", err)
	}
	m, body := testMessage(9, "anna@client.example")
	if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	seq, _ := a.ChainHead()
	a.Close()

	var out bytes.Buffer
	vr, err := verify(f.dir, &out)
	if err != nil || !vr.EndChecked || vr.HeadFileSeq != seq || vr.Missing != 0 {
		t.Fatalf("verify after prune and key change: %v, head file at %d, want %d\n%s", err, vr.HeadFileSeq, seq, out.String())
	}
	// A head file from before the prune, given apart: an older copy.
	older := filepath.Join(t.TempDir(), "older-head")
	os.WriteFile(older, oldest, 0o600)
	out.Reset()
	if _, err = VerifyWith(f.dir, &out, VerifyOptions{HeadFile: older}); err != nil || !strings.Contains(out.String(), "no longer in the archive (pruned since)") {
		t.Fatalf("verify with a head file older than the prune, given apart: %v\n%s", err, out.String())
	}
}

// TestPruneBehindTheHead: the seal key is in the archive folder, so whoever
// has the folder can sign a prune record that accounts for removing every
// segment up to the newest records. The relay moves its head file past a
// prune record before it removes anything, so its head file naming a
// record that was pruned shows it: verify fails, the relay does not start.
// A head file given apart may be an older copy, from before a prune; but
// no retention removes its record's segment within a day.
func TestPruneBehindTheHead(t *testing.T) {
	c := newCutArchive(t)
	ctx := context.Background()
	left := keepHead(t, c.dir) // what the head file says before the forgery: record 25
	a := c.open(t, 0)
	a.CloseSegment(ctx)
	c.advance(time.Hour)
	rep, err := a.Prune(ctx, time.Minute, false)
	if err != nil || len(rep.Removed) != 5 {
		t.Fatalf("prune: %+v, %v", rep, err)
	}
	if h := headOf(t, c.dir); h.Seq != 27 {
		t.Fatalf("the head file names record %d after the prune, want the prune record (27)", h.Seq)
	}
	a.Close()
	if _, err := verify(c.dir, nil); err != nil {
		t.Fatalf("verify after a prune: %v", err)
	}
	apart := filepath.Join(t.TempDir(), "head")
	os.WriteFile(apart, mustRead(filepath.Dir(c.dir), "archive-head"), 0o600)
	left()
	var out bytes.Buffer
	if _, err := verify(c.dir, &out); !errors.Is(err, errDamaged) || !strings.Contains(err.Error(), "segments were removed under a prune record written after the head file") {
		t.Fatalf("verify: %v; want it to say the head file's record was removed\n%s", err, out.String())
	}
	os.WriteFile(apart, mustRead(filepath.Dir(c.dir), "archive-head"), 0o600)
	if _, err := VerifyWith(c.dir, nil, VerifyOptions{HeadFile: apart}); err == nil || !strings.Contains(err.Error(), "sooner than any retention allows") {
		t.Errorf("verify with the head file given apart: %v; want it to say the prune came too soon", err)
	}
	before := snapshot(t, c.dir)
	if a, err := Open(Options{Dir: c.dir, PublicKey: c.pub, Now: c.clock}); err == nil {
		a.Close()
		t.Fatal("the relay started on an archive pruned past its head file")
	} else if !strings.Contains(err.Error(), "but the archive starts at record 27") {
		t.Errorf("Open: %v", err)
	}
	if snapshot(t, c.dir) != before {
		t.Error("Open wrote before it stopped")
	}
}

// TestHeadWriteFailure: a head file that cannot be written does not fail
// records that are durable; it is logged once, and written again with the
// next batch once it can be.
func TestHeadWriteFailure(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	headDir := filepath.Join(t.TempDir(), "heads")
	os.MkdirAll(headDir, 0o700)
	var logs bytes.Buffer
	a, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock, HeadFile: filepath.Join(headDir, "archive-head"),
		Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	recordMessage := func(i int) {
		t.Helper()
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	recordMessage(1)
	os.RemoveAll(headDir)
	recordMessage(2)
	recordMessage(3)
	os.MkdirAll(headDir, 0o700)
	recordMessage(4)
	a.Close()
	if n := strings.Count(logs.String(), "cannot write the head file"); n != 1 {
		t.Errorf("%d errors logged, want 1:\n%s", n, logs.String())
	}
	rep, err := VerifyWith(f.dir, nil, VerifyOptions{HeadFile: filepath.Join(headDir, "archive-head")})
	if err != nil || rep.HeadFileSeq != 5 || rep.HeadSeq != 5 {
		t.Fatalf("verify: %v; head file at %d, chain at %d", err, rep.HeadFileSeq, rep.HeadSeq)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestVerifyWhileWriting: verify (and so prune, which verifies first)
// runs while the relay writes: a record being written is not a torn tail,
// and the head file, read before the segments, is never beyond them.
func TestVerifyWhileWriting(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 4<<20) // segments close while verify reads
	defer a.Close()
	ctx := context.Background()
	// Large records go out in several writes: verify sees them half done.
	big := strings.Repeat("A line of a long letter, written out at length.\r\n", 12<<10)
	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				m, body := testMessage(w*10000+i, "anna@client.example")
				if err := a.RecordMessage(ctx, m, strings.NewReader(body+big)); err != nil {
					t.Error(err)
					return
				}
			}
		}(w)
	}
	defer func() { close(done); wg.Wait() }()
	var pending int
	for deadline, n := time.Now().Add(2*time.Second), 0; n < 20 || time.Now().Before(deadline) && pending == 0; n++ {
		var out bytes.Buffer
		rep, err := verify(f.dir, &out)
		if err != nil || !rep.EndChecked {
			t.Fatalf("verify %d while writing: %v\n%s", n, err, out.String())
		}
		if rep.Pending > 0 {
			pending++
		}
	}
	t.Logf("%d verifies saw a write in progress", pending)
}
