package relay

import (
	"bytes"
	"io"
	"testing"
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
