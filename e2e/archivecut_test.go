package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/testutil"
)

// TestArchiveCutOffTheEnd: mail goes through a running relay into an
// archive of three segments (two sealed); the relay stops, and the archive
// is cut in each way an adversary or a lost write could: records off the
// end at a record boundary or inside a record, the newest segment file,
// the newest sealed segments, a segment in the middle. `sealpost archive
// verify` fails for each and says how many records are missing (the head
// file next to the archive says how far the chain had reached), and the
// relay refuses to start on such an archive rather than write a new head
// over the cut. The untouched archive verifies; a crash's torn tail is
// reported, accepted with --allow-torn-tail, and set aside by the next
// start; a copy of the archive without its head file verifies only with
// --no-head, or with the head file given apart (--head).
func TestArchiveCutOffTheEnd(t *testing.T) {
	testutil.RequireTools(t, "swaks")
	r := StartRelay(t, RelayOptions{})
	adir := filepath.Join(r.DataDir, "archive")
	head := archive.HeadFile(adir)
	for seg := 1; seg <= 3; seg++ {
		for i := 1; i <= 2; i++ {
			subject := fmt.Sprintf("Subject: segment %d, message %d", seg, i)
			if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--header", subject)...); !ok {
				t.Fatalf("swaks: %s", out)
			}
		}
		testutil.WaitWithin(t, 30*time.Second, "the queue to drain", func() bool {
			out, _, _ := r.Run(t, "", "queue", "list")
			return strings.Contains(out, "empty")
		})
		r.Stop(t)
		if seg < 3 {
			sealSegment(t, r)
			r.Start(t)
		}
	}
	pristine := filepath.Join(t.TempDir(), "pristine")
	copyTree(t, r.DataDir, pristine, "archive", "archive-head")
	restore := func(t *testing.T) {
		t.Helper()
		os.RemoveAll(adir)
		os.Remove(head)
		copyTree(t, pristine, r.DataDir, "archive", "archive-head")
	}
	seg := func(n int) string { return filepath.Join(adir, fmt.Sprintf("seg-%08d.log", n)) }
	if _, err := os.Stat(seg(3)); err != nil {
		t.Fatalf("want three segments: %v", err)
	}
	last := recordRanges(t, seg(3))
	if len(last) < 4 {
		t.Fatalf("seg-00000003.log holds %d records, the cuts want 4", len(last))
	}
	apart := filepath.Join(t.TempDir(), "archive-head-given-apart")

	tests := []struct {
		name   string
		mutate func(t *testing.T)
		args   []string
		code   int
		want   []string
	}{
		{"untouched", func(*testing.T) {}, nil, 0,
			[]string{"The archive verifies", "says the chain reached record", "it does, and ends there"}},
		{"three records cut off at a record boundary", func(t *testing.T) {
			os.Truncate(seg(3), last[len(last)-4][1])
		}, nil, 1, []string{"3 records are missing from the end: the head file says the chain reached record"}},
		{"cut inside the last record", func(t *testing.T) {
			l := last[len(last)-1]
			os.Truncate(seg(3), l[0]+(l[1]-l[0])/2)
		}, nil, 1, []string{"1 record is missing from the end", "torn tail"}},
		{"cut inside the last record, torn tails allowed", func(t *testing.T) {
			l := last[len(last)-1]
			os.Truncate(seg(3), l[0]+(l[1]-l[0])/2)
		}, []string{"--allow-torn-tail"}, 1, []string{"1 record is missing from the end"}},
		{"the newest segment file deleted", func(t *testing.T) { os.Remove(seg(3)) }, nil, 1,
			[]string{fmt.Sprintf("%d records are missing from the end", len(last)), "seg-00000003.log, which the head file names, is missing"}},
		{"the newest sealed segment and the open one deleted", func(t *testing.T) { os.Remove(seg(2)); os.Remove(seg(3)) }, nil, 1,
			[]string{fmt.Sprintf("%d records are missing from the end", len(recordRanges(t, filepath.Join(pristine, "archive", "seg-00000002.log")))+len(last))}},
		{"a segment deleted in the middle", func(t *testing.T) { os.Remove(seg(2)) }, nil, 1,
			[]string{"segment seg-00000002.log is missing", fmt.Sprintf("%d records are missing", len(recordRanges(t, filepath.Join(pristine, "archive", "seg-00000002.log"))))}},
		{"a crash's torn tail", func(t *testing.T) { appendHalfRecord(t, seg(3), last[len(last)-1]) }, nil, 1,
			[]string{"torn tail", "--allow-torn-tail accepts it"}},
		{"a crash's torn tail, torn tails allowed", func(t *testing.T) { appendHalfRecord(t, seg(3), last[len(last)-1]) }, []string{"--allow-torn-tail"}, 0,
			[]string{"The archive verifies", "WARN seg-00000003.log", "torn tail"}},
		{"a copy of the archive folder without its head file", func(t *testing.T) { os.Remove(head) }, nil, 1,
			[]string{"the end of the archive cannot be checked", "--no-head"}},
		{"a copy without its head file, --no-head", func(t *testing.T) { os.Remove(head) }, []string{"--no-head"}, 0,
			[]string{"The archive verifies as far as the folder alone can show", "records cut off its end would not show"}},
		{"the head file given apart, untouched", func(t *testing.T) { os.Rename(head, apart) }, []string{"--head", apart}, 0,
			[]string{"The archive verifies", "archive-head-given-apart says the chain reached record"}},
		{"the head file given apart, records cut off", func(t *testing.T) {
			os.Rename(head, apart)
			os.Truncate(seg(3), last[len(last)-4][1])
		}, []string{"--head", apart}, 1, []string{"3 records are missing from the end"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			restore(t)
			tt.mutate(t)
			stdout, stderr, code := r.Run(t, "", append([]string{"archive", "verify"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("archive verify %v: exit %d, want %d\n%s%s", tt.args, code, tt.code, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout+stderr, w) {
					t.Errorf("archive verify %v does not say %q:\n%s%s", tt.args, w, stdout, stderr)
				}
			}
		})
	}

	// The relay does not start on an archive with records cut off the end:
	// a new head file would cover the cut up.
	t.Run("the relay refuses a cut archive", func(t *testing.T) {
		restore(t)
		os.Truncate(seg(3), last[len(last)-4][1])
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, Sealpost(t), "serve", "-c", r.Config).CombinedOutput()
		if ctx.Err() != nil || err == nil {
			t.Fatalf("sealpost serve ran on a cut archive (%v):\n%s", err, out)
		}
		if !strings.Contains(string(out), "3 records are missing from the end") {
			t.Errorf("sealpost serve did not say why it stopped:\n%s", out)
		}
		if stdout, _, code := r.Run(t, "", "archive", "verify"); code != 1 || !strings.Contains(stdout, "3 records are missing") {
			t.Errorf("the refused start changed what verify finds: exit %d\n%s", code, stdout)
		}
	})
	// A crash's torn tail: the next start sets it aside, and the archive
	// verifies again.
	t.Run("the relay starts after a crash", func(t *testing.T) {
		restore(t)
		appendHalfRecord(t, seg(3), last[len(last)-1])
		r.Start(t)
		r.Stop(t)
		if stdout, stderr, code := r.Run(t, "", "archive", "verify"); code != 0 || !strings.Contains(stdout, "it does, and ends there") {
			t.Fatalf("verify after the start: exit %d\n%s%s", code, stdout, stderr)
		}
	})
}

// sealSegment seals the segment being written, with the relay stopped, as
// the relay does a day after a segment's first record (a test cannot wait
// a day).
func sealSegment(t *testing.T, r *Relay) {
	t.Helper()
	pub, _, err := archive.EnsureKey(r.DataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(archive.Options{Dir: filepath.Join(r.DataDir, "archive"), PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.CloseSegment(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// recordRanges reads the byte ranges of a segment's records (the layout in
// archive/segment.go).
func recordRanges(t *testing.T, path string) [][2]int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]int64
	for off := int64(0); off+8 <= int64(len(b)) && string(b[off:off+4]) == "SPR1"; {
		hl := int64(binary.BigEndian.Uint32(b[off+4:]))
		pl := int64(binary.BigEndian.Uint64(b[off+8+hl:]))
		end := off + 8 + hl + 8 + pl + 32
		out = append(out, [2]int64{off, end})
		off = end
	}
	return out
}

// appendHalfRecord leaves what a crash in the middle of a write leaves:
// the first half of a record after the last one, and the head file as it
// was (it is written only after the write's fsync).
func appendHalfRecord(t *testing.T, path string, r [2]int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write(b[r[0] : r[0]+(r[1]-r[0])/2])
}

// copyTree copies the named files and folders of src into dst; a name
// src does not have is left out (the cases say what must be there).
func copyTree(t *testing.T, src, dst string, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(src, n)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		err := filepath.WalkDir(filepath.Join(src, n), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o700)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
