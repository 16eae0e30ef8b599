package rules

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-message/textproto"
)

// hasLongLine reports a line over 998 octets (RFC 5322 2.1.1).
func hasLongLine(b []byte) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return len(b) > maxLine
		}
		if n := i; n > maxLine+1 || (n == maxLine+1 && b[i-1] != '\r') {
			return true
		}
		b = b[i+1:]
	}
	return false
}

const (
	maxLine = 998
	maxPeek = 1 << 20
)

// peekLongLine reads up to maxPeek of a part to see whether it has a line
// over 998 octets: the transfer encoding must be chosen before the part's
// header is written. It returns the whole part again (what it read, then
// the rest) and whether a long line was found in what it read (one further
// on is refused: lineGuard). What it read is in a pooled buffer: call
// release once the part has been read.
func peekLongLine(body io.Reader) (whole io.Reader, long bool, release func(), err error) {
	buf := peekSmall.Get().(*[]byte)
	release = func() { peekSmall.Put(buf) }
	n, err := io.ReadFull(body, *buf)
	long = hasLongLine((*buf)[:n])
	if err == nil && !long {
		// A large part: the rest of the peek needs the large buffer, and
		// only the line still open at the end of the first read and what
		// follows need looking at.
		open := bytes.LastIndexByte((*buf)[:n], '\n') + 1
		small := buf
		buf = peekLarge.Get().(*[]byte)
		release = func() { peekLarge.Put(buf) }
		copy(*buf, (*small)[:n])
		peekSmall.Put(small)
		var m int
		m, err = io.ReadFull(body, (*buf)[n:])
		long = hasLongLine((*buf)[open : n+m])
		n += m
	}
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		release()
		return nil, false, nil, err
	}
	return io.MultiReader(bytes.NewReader((*buf)[:n]), body), long, release, nil
}

// peekSmall and peekLarge hold what peekLongLine read: a part of a
// megabyte read into a fresh slice cost the relay more in allocation and
// clearing than in reading. Most parts fit the small ones, which keeps the
// large ones (and the memory they hold) few.
var (
	peekSmall = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}
	peekLarge = sync.Pool{New: func() any { b := make([]byte, maxPeek); return &b }}
)

// copyLeaf copies a part that gets no notice (an attachment, an image),
// re-encoding it as base64 when it has lines too long to send as they are.
func copyLeaf(w io.Writer, h textproto.Header, body io.Reader) error {
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	if !unencoded(cte) {
		return copyEntity(w, h, body)
	}
	whole, long, release, err := peekLongLine(body)
	if err != nil {
		return err
	}
	defer release()
	body = whole
	if !long {
		return copyEntity(w, h, body)
	}
	h.Set("Content-Transfer-Encoding", "base64")
	if err := textproto.WriteHeader(w, h); err != nil {
		return err
	}
	enc := newBase64Lines(w)
	if _, err := io.Copy(enc, body); err != nil {
		return err
	}
	return enc.Close()
}

// ErrLineTooLong is returned when a message would go out with a line over
// 998 octets that could not be re-encoded (inside a signed or encrypted
// part, or past what is examined in memory).
var ErrLineTooLong = errors.New("a line is longer than 998 octets in a part that cannot be re-encoded")

// lineGuard passes writes on and fails at the first line over 998 octets.
type lineGuard struct {
	w   io.Writer
	cur int // octets since the last LF
}

func (g *lineGuard) Write(p []byte) (int, error) {
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			g.cur += len(rest)
			break
		}
		if g.cur+i > maxLine+1 {
			return 0, ErrLineTooLong
		}
		g.cur = 0
		rest = rest[i+1:]
	}
	if g.cur > maxLine+1 {
		return 0, ErrLineTooLong
	}
	return g.w.Write(p)
}
