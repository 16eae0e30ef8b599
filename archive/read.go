package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// located is a record found by its header, and where its payload is.
type located struct {
	seg    string
	h      header
	payOff int64
	payLen int64
}

// walk calls f for every complete record of every segment, in order.
func walk(dir string, f func(located)) error {
	_, err := walkFrom(dir, nil, f)
	return err
}

// walkFrom is walk starting, in each segment, at the offset given in from
// (the end of what an earlier walk saw) and returning the new ends: an
// archive that only grows is read once, not at every look.
func walkFrom(dir string, from map[string]int64, f func(located)) (map[string]int64, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	ends := make(map[string]int64, len(segs))
	for _, s := range segs {
		off := from[s]
		ends[s] = off
		file, err := os.Open(filepath.Join(dir, s))
		if err != nil {
			return nil, err
		}
		fi, err := file.Stat()
		if err != nil {
			file.Close()
			return nil, err
		}
		size := fi.Size()
		var fixed [8]byte
		for off+8 <= size {
			if _, err := file.ReadAt(fixed[:], off); err != nil {
				break
			}
			hl := int64(binary.BigEndian.Uint32(fixed[4:]))
			if string(fixed[:4]) != recordMagic || hl > maxHeaderLen || off+8+hl+8 > size {
				break
			}
			hb := make([]byte, hl)
			file.ReadAt(hb, off+8)
			file.ReadAt(fixed[:], off+8+hl)
			pl := int64(binary.BigEndian.Uint64(fixed[:]))
			if pl < 0 || off+8+hl+8+pl+32 > size {
				break
			}
			var h header
			if json.Unmarshal(hb, &h) == nil {
				f(located{seg: s, h: h, payOff: off + 8 + hl + 8, payLen: pl})
			}
			off += 8 + hl + 8 + pl + 32
			ends[s] = off
		}
		file.Close()
	}
	return ends, nil
}

type openSegments struct {
	dir   string
	mu    sync.Mutex // guards files; reads (ReadAt) run in parallel
	files map[string]*os.File
}

func (o *openSegments) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, f := range o.files {
		f.Close()
	}
	o.files = map[string]*os.File{}
}

func (o *openSegments) file(seg string) (*os.File, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if f := o.files[seg]; f != nil {
		// A segment pruned since it was opened must not stay readable
		// through the open file (a long-running view).
		if _, err := os.Stat(filepath.Join(o.dir, seg)); errors.Is(err, os.ErrNotExist) {
			f.Close()
			delete(o.files, seg)
			return nil, fmt.Errorf("%s was pruned", seg)
		}
		return f, nil
	}
	f, err := os.Open(filepath.Join(o.dir, seg))
	if err != nil {
		return nil, err
	}
	o.files[seg] = f
	return f, nil
}

// inOrder runs work(i) for every i below n on every core, and hands each
// result to use in the order of i; it stops at the first error from use.
// Records are decrypted this way: decryption is the slow part, and the
// manifest and the view keep the chain's order.
func inOrder[T any](ctx context.Context, n int, work func(i int) T, use func(i int, r T) error) error {
	results := make([]chan T, n)
	for i := range results {
		results[i] = make(chan T, 1)
	}
	wctx, stop := context.WithCancel(ctx)
	var workers sync.WaitGroup
	defer func() { stop(); workers.Wait() }()
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), n) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range next {
				results[i] <- work(i)
			}
		}()
	}
	go func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-wctx.Done():
				return
			}
		}
	}()
	for i := range n {
		select {
		case r := <-results[i]:
			if err := use(i, r); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// decrypt reads a record's payload and splits it into body and metadata.
func (o *openSegments) decrypt(l located, key openpgp.EntityList) (body, meta []byte, err error) {
	var plain bytes.Buffer
	plain.Grow(int(l.payLen)) // the plaintext is a little shorter than its encryption
	if _, err := o.decryptTo(l, key, &plain); err != nil {
		return nil, nil, err
	}
	p := plain.Bytes()
	split, err := splitAt(int64(len(p)), func(b []byte, off int64) error { copy(b, p[off:]); return nil })
	if err != nil {
		return nil, nil, err
	}
	return p[:split], p[split : len(p)-4], nil
}

// decryptTo streams a record's plaintext (body, metadata, and the
// metadata's length) into w, and returns its length. What it wrote is to be
// thrown away on error: the payload's hash and the MDC are known only at its
// end.
func (o *openSegments) decryptTo(l located, key openpgp.EntityList, w io.Writer) (int64, error) {
	f, err := o.file(l.seg)
	if err != nil {
		return 0, err
	}
	h := sha256.New()
	payload := io.TeeReader(io.NewSectionReader(f, l.payOff, l.payLen), h)
	// A damaged payload usually fails to decrypt before its hash is known:
	// the hash is what says which it is.
	damaged := func(err error) error {
		if _, derr := io.Copy(io.Discard, payload); derr != nil {
			return derr
		}
		if hex.EncodeToString(h.Sum(nil)) != l.h.PSHA {
			return fmt.Errorf("the payload does not match its header (run sealpost archive verify): %w", err)
		}
		return err
	}
	md, err := openpgp.ReadMessage(payload, key, nil, nil)
	if err != nil {
		return 0, damaged(fmt.Errorf("decrypt: %w (is this the archive's private key?)", err))
	}
	n, err := io.Copy(w, md.UnverifiedBody) // at its end, the MDC is checked
	if err != nil {
		return n, damaged(fmt.Errorf("decrypt: %w", err))
	}
	// Whatever follows the packets counts too.
	if err := damaged(nil); err != nil {
		return n, err
	}
	return n, nil
}

// metadata decrypts a record for its metadata and body size only: the body
// streams past, only its last part is kept, and its start goes to head.
func (o *openSegments) metadata(l located, key openpgp.EntityList, head io.Writer) (size int64, meta []byte, err error) {
	tail := &tailKeeper{keep: 256 << 10}
	n, err := o.decryptTo(l, key, io.MultiWriter(head, tail))
	if err != nil {
		return 0, nil, err
	}
	kept := int64(len(tail.b))
	size, err = splitAt(n, func(b []byte, off int64) error {
		if off < n-kept {
			return errTailTooShort
		}
		copy(b, tail.b[off-(n-kept):])
		return nil
	})
	if err == errTailTooShort || (err == nil && size < n-kept) {
		// Metadata longer than what was kept (hundreds of recipients):
		// decrypt again, whole.
		body, meta, err := o.decrypt(l, key)
		return int64(len(body)), meta, err
	}
	if err != nil {
		return 0, nil, err
	}
	return size, tail.b[size-(n-kept) : kept-4], nil
}

var errTailTooShort = errors.New("metadata beyond the kept tail")

// sameMessage checks that a message record's metadata is about the message
// its header (hash-chained) names: a payload moved from another record
// decrypts fine.
func sameMessage(l located, meta []byte) error {
	var m struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(meta, &m); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if m.ID != l.h.ID {
		return fmt.Errorf("its metadata names message %s, its header %s", m.ID, l.h.ID)
	}
	return nil
}

// tailKeeper is a writer that keeps only the last keep octets (at least).
type tailKeeper struct {
	keep int
	b    []byte
}

func (t *tailKeeper) Write(p []byte) (int, error) {
	if len(p) >= t.keep {
		t.b = append(t.b[:0], p[len(p)-t.keep:]...)
		return len(p), nil
	}
	if len(t.b)+len(p) > 2*t.keep { // move the last keep-len(p) to the front
		t.b = t.b[:copy(t.b, t.b[len(t.b)-(t.keep-len(p)):])]
	}
	t.b = append(t.b, p...)
	return len(p), nil
}

// splitAt finds where the body ends in a plaintext of size n, reading its
// last octets through readAt: the metadata's length is in the last four.
func splitAt(n int64, readAt func(b []byte, off int64) error) (int64, error) {
	if n < 4 {
		return 0, errors.New("payload too short")
	}
	var l [4]byte
	if err := readAt(l[:], n-4); err != nil {
		return 0, err
	}
	m := int64(binary.BigEndian.Uint32(l[:]))
	if m > n-4 {
		return 0, errors.New("payload metadata length out of range")
	}
	return n - 4 - m, nil
}
