package submission

import (
	"bytes"
	"io"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/bufpool"
)

// bodyBufs are the 64 KiB buffers messages are read through; between
// messages a connection holds only its small one (commandBufSize).
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, bufpool.Size); return &b }}

// bodyReader reads a message's DATA from the wire: dot-unstuffed, up
// to the line "." that ends it, which it consumes. As go-smtp's reader, it
// leaves CRLF as it is (bare CR and LF are strictReader's to refuse) and
// begins a line only after CRLF; unlike it, a "." then a bare CR at a line
// start is passed on as the bare CR, which strictReader then refuses.
type bodyReader struct {
	f           *wire
	atLineStart bool
	afterCR     bool
	left        int64 // octets the message may still have
	done        bool
	err         error
}

// body starts reading the message go-smtp has just answered 354 to, or
// returns nil if the current command is not DATA (BDAT, or not a wire).
func (f *wire) body() *bodyReader {
	if f == nil || f.sec == nil || !f.dataIssued.Swap(false) {
		return nil
	}
	left := f.cfg.maxSize
	if left <= 0 {
		left = 1 << 62
	}
	f.beginTransfer()
	f.bigBuf = bodyBufs.Get().(*[]byte)
	n := copy(*f.bigBuf, f.buf[f.r:f.w])
	f.small, f.buf, f.r, f.w = f.buf, *f.bigBuf, 0, n
	return &bodyReader{f: f, atLineStart: true, left: left}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if b.left <= 0 {
		b.err = smtp.ErrDataTooLarge
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n := 0
	f := b.f
	for n < len(p) {
		avail := f.buf[f.r:f.w]
		if b.atLineStart {
			switch {
			case len(avail) >= 3 && avail[0] == '.' && avail[1] == '\r' && avail[2] == '\n':
				f.r += 3
				b.done = true
				b.left -= int64(n)
				if n == 0 {
					return 0, io.EOF
				}
				return n, nil
			case len(avail) >= 2 && avail[0] == '.' && avail[1] != '\r',
				len(avail) >= 3 && avail[0] == '.':
				f.r++ // the stuffed dot
				b.atLineStart = false
				continue
			case len(avail) >= 1 && avail[0] != '.':
				b.atLineStart = false
			default:
				// Not enough to tell the end from a stuffed dot.
				if n > 0 {
					b.left -= int64(n)
					return n, nil
				}
				if err := b.fill(); err != nil {
					return 0, err
				}
				continue
			}
		}
		if len(avail) == 0 {
			if n > 0 {
				break
			}
			if err := b.fill(); err != nil {
				return 0, err
			}
			continue
		}
		seg := avail[:min(len(avail), len(p)-n)]
		if i := bytes.IndexByte(seg, '\n'); i >= 0 {
			seg = seg[:i+1]
			b.atLineStart = i > 0 && seg[i-1] == '\r' || i == 0 && b.afterCR
			b.afterCR = false
		} else {
			b.afterCR = seg[len(seg)-1] == '\r'
		}
		n += copy(p[n:], seg)
		f.r += len(seg)
	}
	b.left -= int64(n)
	return n, nil
}

func (b *bodyReader) fill() error {
	f := b.f
	f.sec.SetReadDeadline(f.readDeadline(time.Now().Add(f.cfg.timeout)))
	if err := f.fill(f.sec); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if f.timedOut(err) {
			b.err = f.ended.Load()
			return b.err
		}
		// The message's end was not found: what follows cannot be read
		// as commands. The session ends after the reply.
		b.err, f.readErr = err, err
		return err
	}
	return nil
}

// finish reads the rest of the message, whatever became of it, and hands
// go-smtp the end of its (empty) DATA, so that it sends the reply and reads
// the next command where the client's is.
func (b *bodyReader) finish() {
	if b.err == smtp.ErrDataTooLarge {
		b.err = nil
	}
	b.left = 1 << 62
	var scratch [4096]byte
	for b.err == nil && !b.done {
		b.Read(scratch[:])
	}
	if b.done {
		b.f.inject = []byte(".\r\n")
	}
	b.f.endTransfer()
	// Back to the small buffer, unless the client pipelined more behind
	// the message than it holds.
	f := b.f
	if f.bigBuf != nil && f.w-f.r <= len(f.small) {
		n := copy(f.small, f.buf[f.r:f.w])
		f.buf, f.r, f.w = f.small, 0, n
		bodyBufs.Put(f.bigBuf)
		f.bigBuf = nil
	}
}
