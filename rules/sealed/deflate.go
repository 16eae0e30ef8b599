package sealed

import (
	"compress/flate"
	"compress/zlib"
	"fmt"
	"io"
	"strings"
	"sync"
)

// zlibWriters are compressors to reuse: each holds a few hundred KB of
// tables, more than a short message's pages and text.
var zlibWriters = sync.Pool{New: func() any {
	zw, _ := zlib.NewWriterLevel(io.Discard, flate.BestSpeed) // a valid level: no error
	return zw
}}

// deflate is what write writes, compressed as a FlateDecode stream wants
// it (zlib, RFC 1950), in one buffer of its size with room after it for
// pdfcpu's padding. Flate's fastest level: the relay seals hundreds of
// short messages a second, and a long text's CPU is spent where it gains
// most (text compresses 2:1 at this level, and 2.4:1 at three times the
// CPU).
func deflate(write func(io.Writer) error) ([]byte, error) {
	var out blocks
	zw := zlibWriters.Get().(*zlib.Writer)
	zw.Reset(&out)
	defer func() {
		zw.Reset(io.Discard) // holds no buffer of this document
		zlibWriters.Put(zw)
	}()
	if err := write(zw); err != nil {
		return nil, fmt.Errorf("sealed: compress a PDF stream: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("sealed: compress a PDF stream: %w", err)
	}
	return out.join(), nil
}

// blocks collects what is written in blocks that grow to 1 MB, joined
// once at the end: no buffer is copied over and over as it grows, nor
// left with unused room.
type blocks struct {
	full [][]byte
	cur  []byte
	n    int
}

func (b *blocks) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(b.cur) == cap(b.cur) {
			if b.cur != nil {
				b.full = append(b.full, b.cur)
			}
			b.cur = make([]byte, 0, min(max(2*cap(b.cur), 4<<10), 1<<20))
		}
		k := min(len(p), cap(b.cur)-len(b.cur))
		b.cur = append(b.cur, p[:k]...)
		p = p[k:]
	}
	b.n += n
	return n, nil
}

// join is everything written, with padSpare bytes of room after it.
func (b *blocks) join() []byte {
	if len(b.full) == 0 && cap(b.cur)-len(b.cur) >= padSpare {
		return b.cur
	}
	out := make([]byte, 0, b.n+padSpare)
	for _, c := range b.full {
		out = append(out, c...)
	}
	return append(out, b.cur...)
}

// lfWriter writes strings with their line ends made LF (CRLF and a lone
// CR alike, as normaliseLines does), copied through a buffer of its own:
// a string is never converted to a slice whole.
type lfWriter struct {
	w      io.Writer
	buf    []byte
	lastCR bool // the last byte taken was a CR, written as LF
}

func newLFWriter(w io.Writer) *lfWriter { return &lfWriter{w: w, buf: make([]byte, 0, 32<<10)} }

func (l *lfWriter) WriteString(s string) error {
	if l.lastCR && s != "" && s[0] == '\n' {
		s = s[1:]
	}
	l.lastCR = false
	for s != "" {
		line := s
		if i := strings.IndexByte(s, '\r'); i >= 0 {
			line = s[:i]
		}
		s = s[len(line):]
		if err := l.append(line); err != nil {
			return err
		}
		if s == "" {
			break
		}
		s = s[1:] // the CR
		if s != "" && s[0] == '\n' {
			continue // CRLF: the LF goes with what follows
		}
		if err := l.append("\n"); err != nil {
			return err
		}
		l.lastCR = s == ""
	}
	return nil
}

func (l *lfWriter) append(s string) error {
	for s != "" {
		n := min(len(s), cap(l.buf)-len(l.buf))
		l.buf = append(l.buf, s[:n]...)
		s = s[n:]
		if len(l.buf) == cap(l.buf) {
			if err := l.Flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Flush writes what is buffered.
func (l *lfWriter) Flush() error {
	_, err := l.w.Write(l.buf)
	l.buf = l.buf[:0]
	return err
}
