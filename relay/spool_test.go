package relay

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// TestSpoolCopies: copies written in writes of every size, smaller and
// larger than the write buffer, read back exactly, each in its own section,
// also when one between them was dropped.
func TestSpoolCopies(t *testing.T) {
	s, _, err := openSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.newIncoming("test-id")
	if err != nil {
		t.Fatal(err)
	}
	defer in.abort()
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
	in.drop("sent")
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
	s, _, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	spoolOne := func(id string) *entry {
		t.Helper()
		in, err := s.newIncoming(id)
		if err != nil {
			t.Fatal(err)
		}
		w, _ := in.Create("plain")
		io.WriteString(w, "Subject: "+id+"\r\n\r\nbody\r\n")
		w.Close()
		e := newEntry(s, id, "t", "t@practice.test", time.Now(), []rules.Copy{{Name: "plain", Recipients: []string{"a@practice.test"}}}, false)
		if err := in.commit(e, false); err != nil {
			t.Fatal(err)
		}
		in.confirm()
		return e
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
	if _, err := s.newIncoming("taken"); err == nil {
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
	s, _, err = openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if ents, _ := os.ReadDir(filepath.Join(dir, freeDir)); len(ents) != 0 {
		t.Errorf("files set aside before a restart are still there: %d", len(ents))
	}
}

// TestEntryRemove: removing a message takes its file away before its
// state (a message without its state would go to every recipient again),
// and the folder is fsynced after, so a crash cannot bring it back.
func TestEntryRemove(t *testing.T) {
	tests := []struct {
		name string
		// setup makes the spool misbehave or watches it; check runs after
		// remove returned err.
		setup func(t *testing.T, s *spool, e *entry) (check func(err error))
	}{
		{"the message goes before its state", func(t *testing.T, s *spool, e *entry) func(error) {
			// Setting the file aside fails: a file where the folder was.
			if err := os.RemoveAll(s.fdir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.fdir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return func(err error) {
				if err == nil {
					t.Fatal("remove succeeded though the file could not be set aside")
				}
				if _, err := os.Stat(e.path); err != nil {
					t.Fatalf("the message is gone: %v", err)
				}
				st, err := loadEntry(e.path)
				if err != nil || st.state.Attempts != 1 {
					t.Errorf("the message lost its state (%v): its recipients would get it again", err)
				}
			}
		}},
		{"the folder is synced after", func(t *testing.T, s *spool, e *entry) func(error) {
			var mu sync.Mutex
			syncedWithout := false
			s.dirSync.fsync = func(dir string) error {
				_, err := os.Stat(e.path)
				mu.Lock()
				syncedWithout = syncedWithout || (dir == s.qdir && os.IsNotExist(err))
				mu.Unlock()
				return syncDir(dir)
			}
			return func(err error) {
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if !syncedWithout {
					t.Error("the queue folder was not fsynced after the message left it")
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, err := openSpool(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			e := spoolMessage(t, s, rules.Copy{Name: "plain", Recipients: []string{"a@client.example"}, Protection: record.Encrypted})
			e.state.Attempts = 1
			if err := e.saveState(); err != nil {
				t.Fatal(err)
			}
			check := tt.setup(t, s, e)
			check(e.remove())
		})
	}
}
