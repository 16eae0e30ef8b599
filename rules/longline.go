package rules

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/emersion/go-message/textproto"
)

// RFC 5322 2.1.1: a line is at most 998 octets, its CRLF left out. Body
// lines longer than that are re-encoded where the part may be changed: text
// parts as quoted-printable (textPlain, textHTML), other parts as base64
// (copyLeaf). Where it may not (inside a part the sender signed or
// encrypted) the message is refused: lineLimitWriter on what the notice
// transform writes, lineLimitReader on a copy passed through as it is.
const (
	maxLine = 998
	// maxPeek is how much of a part is examined for long lines before its
	// header is written; a long line further on is refused.
	maxPeek = 1 << 20
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

// peekLongLine reads up to maxPeek of a part to see whether it has a line
// over 998 octets: the transfer encoding must be chosen before the part's
// header is written. It returns the whole part again (what it read, then
// the rest) and whether a long line was found in what it read (one further
// on is refused: lineLimitWriter). What it read is in a pooled buffer: call
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

// peekSmall and peekLarge hold what peekLongLine read: reading a part of a
// megabyte into a fresh slice costs more in allocation and clearing than
// the reading itself. Most parts fit the small ones, which keeps the large
// ones (and the memory they hold) few.
var (
	peekSmall = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}
	peekLarge = sync.Pool{New: func() any { b := make([]byte, maxPeek); return &b }}
)

// copyLeaf copies a part that gets no notice (an attachment, an image),
// re-encoding it as base64 when it has lines too long to send as they are.
func copyLeaf(w io.Writer, h textproto.Header, body io.Reader) error {
	if !isIdentityEncoding(transferEncoding(h)) {
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

// lineLimitWriter passes writes on and fails at the first line over 998
// octets.
type lineLimitWriter struct {
	w    io.Writer
	line lineLength
}

func (l *lineLimitWriter) Write(p []byte) (int, error) {
	if l.line.add(p) {
		return 0, ErrLineTooLong
	}
	return l.w.Write(p)
}

// errLongLineRead is lineLimitReader's reason.
var errLongLineRead = errors.New("a line is longer than 998 octets")

// lineLimitReader fails at the first line over 998 octets: a message passed
// through as it is must be sendable as it is.
type lineLimitReader struct {
	r    io.Reader
	line lineLength
}

func (l *lineLimitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if l.line.add(p[:n]) {
		return 0, notEncrypted("%v", errLongLineRead)
	}
	return n, err
}

// lineLength follows the length of the line being written or read across
// calls.
type lineLength struct {
	cur int // octets since the last LF
}

// add counts p and reports whether a line ended in it, or the line still
// open after it, is longer than 998 octets and a CR.
func (l *lineLength) add(p []byte) bool {
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.cur += len(p)
			return l.cur > maxLine+1
		}
		if l.cur+i > maxLine+1 {
			return true
		}
		l.cur = 0
		p = p[i+1:]
	}
}
