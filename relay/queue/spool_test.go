package queue

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/rules"
)

// TestSpoolCopies: copies written in writes of every size, smaller and
// larger than the write buffer, read back exactly, each in its own section,
// also when one between them was dropped.
func TestSpoolCopies(t *testing.T) {
	s, err := openSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.newIncoming("test-id", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer in.Abort()
	want := map[string][]byte{}
	for i, name := range []string{"enc-0", "sent", "enc-1", "empty"} {
		w, err := in.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		var all bytes.Buffer
		if name != "empty" {
			for j, size := range []int{1, 10, 70000, 5, 64 << 10, 3, 65535, 2} {
				chunk := bytes.Repeat([]byte{byte('a' + i + j)}, size)
				all.Write(chunk)
				if n, err := w.Write(chunk); n != size || err != nil {
					t.Fatalf("write %d: %d, %v", size, n, err)
				}
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		want[name] = all.Bytes()
	}
	// The plain copy of a message that goes out only encrypted is dropped
	// before the commit; the copies around it stay as they were.
	in.Keep([]rules.Copy{{Name: "enc-0"}, {Name: "enc-1"}, {Name: "empty"}})
	if _, err := in.Open("sent"); err == nil {
		t.Error("a dropped copy can still be opened")
	}
	delete(want, "sent")
	for name, w := range want {
		r, err := in.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		if !bytes.Equal(got, w) {
			t.Errorf("%s: read back %d octets, wrote %d (or different ones)", name, len(got), len(w))
		}
	}
}

// TestSpoolReusesFiles: a delivered message's file becomes the next
// message's, emptied (no new inode: see spool.free); an existing file is
// never replaced by one; and files set aside for reuse do not outlive a
// restart.
func TestSpoolReusesFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	spoolOne := func(id string) *entry {
		t.Helper()
		in, err := s.newIncoming(id, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		w, _ := in.Create("plain")
		io.WriteString(w, "Subject: "+id+"\r\n\r\nbody\r\n")
		w.Close()
		if err := in.Commit(Envelope{Account: "t", Sender: "t@practice.test", Copies: []rules.Copy{{Name: "plain", Recipients: []string{"a@practice.test"}}}}, false); err != nil {
			t.Fatal(err)
		}
		in.confirm()
		return in.entry
	}
	first := spoolOne("first")
	before, _ := os.Stat(first.path)
	if err := first.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(first.path); !os.IsNotExist(err) {
		t.Fatal("a removed message is still in the queue")
	}
	second := spoolOne("second")
	after, _ := os.Stat(second.path)
	if !os.SameFile(before, after) {
		t.Error("the second message got a new file, not the first one's")
	}
	got, err := loadEntry(second.path)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := got.open("plain")
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "Subject: second\r\n\r\nbody\r\n" {
		t.Errorf("the reused file reads %q", b)
	}

	// A file set aside for reuse never replaces a message's file.
	if err := second.remove(); err != nil {
		t.Fatal(err)
	}
	taken := filepath.Join(s.qdir, "taken"+msgSuffix)
	os.WriteFile(taken, []byte("someone else's"), 0o600)
	if _, err := s.newIncoming("taken", time.Now()); err == nil {
		t.Error("newIncoming took the name of an existing file")
	}
	if b, _ := os.ReadFile(taken); string(b) != "someone else's" {
		t.Errorf("an existing file was replaced: %q", b)
	}

	third := spoolOne("third")
	if err := third.remove(); err != nil {
		t.Fatal(err)
	}
	s.close()
	if ents, _ := os.ReadDir(filepath.Join(dir, freeDir)); len(ents) != 1 {
		t.Fatalf("%d files set aside, want 1", len(ents))
	}
	s, err = openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if ents, _ := os.ReadDir(filepath.Join(dir, freeDir)); len(ents) != 0 {
		t.Errorf("files set aside before a restart are still there: %d", len(ents))
	}
}

func TestSpoolIsExclusive(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if _, err := openSpool(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open of the spool: %v; want 'in use'", err)
	}
}
