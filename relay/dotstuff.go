package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// sendBody writes body as the content of a DATA command the provider has
// answered 354, then ends it. conn is the connection go-smtp writes the
// client's commands to (TLS already applied), with nothing in go-smtp's own
// buffer: Data() flushed its command and read the reply.
//
// go-smtp hands DATA to net/textproto's DotWriter, which dot-stuffs a byte at
// a time through a 4 KiB buffer: for the large messages of a practice
// (scans, PGP/MIME copies) that was a fifth of sealpost's CPU. sendBody does
// the same encoding a line at a time into 64 KiB writes, and passes only the
// final line break through dc, so that dc.Close ends DATA exactly as it
// would have: with "." on a line of its own, after a line break.
func sendBody(conn net.Conn, dc *smtp.DataCommand, body io.Reader, timeout time.Duration) error {
	bw := bodyWriters.Get().(*bufio.Writer)
	bw.Reset(stallWriter{conn, timeout})
	defer func() {
		bw.Reset(nil)
		bodyWriters.Put(bw)
	}()
	bufp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bufp)
	buf := *bufp

	defer conn.SetWriteDeadline(time.Time{})

	lineBreak, err := stuffBody(bw, body, buf)
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("send message to provider: %w", err)
	}
	// dc starts at the beginning of a line: given the line break (or
	// nothing, when the copy does not end with one), its Close adds the
	// missing line break, if any, and the final ".".
	if _, err := dc.Write(lineBreak); err != nil {
		return fmt.Errorf("send message to provider: %w", err)
	}
	return nil
}

// stuffBody writes body, dot-stuffed, to bw, all but its final line break,
// which it returns (nil when body does not end with one) for dc.
func stuffBody(bw *bufio.Writer, body io.Reader, buf []byte) ([]byte, error) {
	d := dotStuffer{w: bw, atLineStart: true}
	// The stream's last two octets are held back until it ends: its final
	// line break must go through dc.
	var held [2]byte
	nheld := 0
	for {
		n, rerr := body.Read(buf)
		switch {
		case n >= 2:
			d.write(held[:nheld])
			d.write(buf[:n-2])
			nheld = copy(held[:], buf[n-2:n])
		case n == 1:
			if nheld == 2 {
				d.write(held[:1])
				held[0] = held[1]
				nheld = 1
			}
			held[nheld] = buf[0]
			nheld++
		}
		if _, err := bw.Write(nil); err != nil { // bufio's sticky write error
			return nil, fmt.Errorf("send message to provider: %w", err)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("read spooled copy: %w", rerr)
		}
	}
	tail := held[:nheld]
	var lineBreak []byte
	switch {
	case bytes.HasSuffix(tail, []byte("\r\n")):
		tail, lineBreak = tail[:len(tail)-2], []byte("\r\n")
	case bytes.HasSuffix(tail, []byte("\n")):
		tail, lineBreak = tail[:len(tail)-1], []byte("\r\n")
	}
	d.write(tail)
	return lineBreak, nil
}

// stallWriter fails a write that makes no progress for timeout: a large
// message over a slow uplink may take long in all, but never stall.
type stallWriter struct {
	conn    net.Conn
	timeout time.Duration
}

func (w stallWriter) Write(p []byte) (int, error) {
	w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.conn.Write(p)
}

var (
	bodyWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}
	bodyBufs    = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}
)

// dotStuffer is the DATA encoding of RFC 5321 section 4.5.2: a line that
// begins with "." gets another one, and, as net/textproto does, a line feed
// without a carriage return before it becomes CRLF. A carriage return
// without a line feed is passed on as it is.
type dotStuffer struct {
	w           *bufio.Writer
	atLineStart bool
	afterCR     bool // the last octet written was '\r'
}

func (d *dotStuffer) write(p []byte) {
	for len(p) > 0 {
		if d.atLineStart && p[0] == '.' {
			d.w.WriteByte('.')
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			d.w.Write(p)
			d.atLineStart = false
			d.afterCR = p[len(p)-1] == '\r'
			return
		}
		d.w.Write(p[:i])
		if !(i > 0 && p[i-1] == '\r' || i == 0 && d.afterCR) {
			d.w.WriteByte('\r')
		}
		d.w.WriteByte('\n')
		d.atLineStart, d.afterCR = true, false
		p = p[i+1:]
	}
}
