package provider

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/bufpool"
)

// sendBody writes body as the content of a DATA command the provider has
// answered 354, and the end of data. conn is the connection the commands go
// to (TLS already applied), with nothing of the provider's unread in the
// client's reply reader.
//
// net/textproto's DotWriter, which go-smtp's client writes DATA with,
// dot-stuffs a byte at a time through a 4 KiB buffer; for the large
// messages of a practice (scans, PGP/MIME copies) that is a large part of
// the relay's CPU (the README's speed section). sendBody does the same
// encoding a line at a time into 64 KiB writes, and ends the data as the
// DotWriter does.
func sendBody(conn net.Conn, body io.Reader, timeout time.Duration) error {
	bw := bufpool.Writer(stallWriter{conn, timeout})
	defer bufpool.PutWriter(bw)
	bufp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bufp)

	defer conn.SetWriteDeadline(time.Time{})
	if err := stuffBody(bw, body, *bufp); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("send message to provider: %w", err)
	}
	return nil
}

// stuffBody writes body, dot-stuffed, and the end of data to bw.
func stuffBody(bw *bufio.Writer, body io.Reader, buf []byte) error {
	d := dotStuffer{w: bw, atLineStart: true}
	for {
		n, rerr := body.Read(buf)
		d.write(buf[:n])
		if _, err := bw.Write(nil); err != nil { // bufio's sticky write error
			return fmt.Errorf("send message to provider: %w", err)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read spooled copy: %w", rerr)
		}
	}
	d.end()
	if _, err := bw.Write(nil); err != nil {
		return fmt.Errorf("send message to provider: %w", err)
	}
	return nil
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

// readBufs are what a spooled copy is read into on its way out.
var readBufs = sync.Pool{New: func() any { b := make([]byte, bufpool.Size); return &b }}

// dotStuffer is the DATA encoding of RFC 5321 section 4.5.2: a line that
// begins with "." gets another one, and, as net/textproto does, a line feed
// without a carriage return before it becomes CRLF. A carriage return
// without a line feed is passed on as it is.
type dotStuffer struct {
	w           *bufio.Writer
	begun       bool
	atLineStart bool
	afterCR     bool // the last octet written was '\r'
}

func (d *dotStuffer) write(p []byte) {
	d.begun = d.begun || len(p) > 0
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

// end ends the data as net/textproto's DotWriter does: the last line, if
// unfinished, gets its line break (an empty message gets one too), then ".".
func (d *dotStuffer) end() {
	switch {
	case d.afterCR:
		d.w.WriteString("\n.\r\n")
	case d.atLineStart && d.begun:
		d.w.WriteString(".\r\n")
	default:
		d.w.WriteString("\r\n.\r\n")
	}
}
