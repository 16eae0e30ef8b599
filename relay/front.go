package relay

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/textutil"
)

// frontConn is the connection go-smtp serves a client on. sealpost holds the
// session's plaintext itself, so that a message is read off the wire in
// blocks instead of through go-smtp's DATA reader, which takes it a byte at
// a time (for a practice's large attachments that was a quarter of the
// relay's CPU):
//
//   - On the submission port it answers the client before TLS itself
//     (greeting, EHLO, STARTTLS; everything else is refused until TLS) and
//     does the handshake; go-smtp starts only then, inside TLS, and its
//     greeting is dropped: the client had sealpost's. On the implicit-TLS
//     port the handshake comes first, with a deadline.
//   - It gives go-smtp at most one command line per Read, so nothing of a
//     message sits in go-smtp's buffer when DATA is answered 354, and
//     Session.Data reads the message from here (bodyReader).
//   - Once the message has been read to its end, go-smtp is handed a lone
//     ".\r\n": its own DATA reader meets the end at once and sends the reply.
//
// Only go-smtp's connection goroutine reads and writes (but see dataIssued);
// Close may come from anywhere and closes the socket underneath.
type frontConn struct {
	*guardConn // the socket: addresses, deadlines, Close
	cfg        *frontConfig
	sec        net.Conn // the session inside TLS; nil until the handshake
	ready      bool     // TLS is up; go-smtp's greeting is handled
	greetRest  bool     // still dropping go-smtp's greeting line
	err        error    // why the session ended before TLS
	readErr    error    // why no more commands can be read (after a broken DATA)

	buf  []byte // bytes read from the client: buf[r:w] not yet consumed
	r, w int
	// preTLSUntil ends the plaintext dialogue: a mail client says EHLO
	// and STARTTLS at once; a peer that idles there (a NOOP every few
	// minutes) would hold a connection slot for ever.
	preTLSUntil time.Time
	// small is buf between messages; while a message is read, buf is a
	// pooled 64 KiB one (bodyBufs), so an idle connection holds 8 KiB.
	small  []byte
	bigBuf *[]byte
	inject []byte // what go-smtp reads before any more of the client's bytes

	line    [8]byte // the start of the command line being handed to go-smtp
	lineLen int
	// dataIssued: the last complete line handed over was DATA. With BDAT,
	// go-smtp runs Session.Data on another goroutine while it reads the
	// chunks through here, hence the atomic; and after a BDAT it never
	// becomes true again in the session (chunkSeen), so that a line of
	// chunk data reading "DATA" cannot count.
	dataIssued atomic.Bool
	chunkSeen  bool

	// transferUntil (UnixNano; 0 when no message is being received) is
	// when the message on its way must have arrived whole (dataDeadline):
	// DATA, or every chunk of a BDAT transaction, whose chunks go-smtp
	// reads while Session.Data runs on another goroutine.
	transferUntil atomic.Int64
	// ended is the reply that ended a transfer that timed out (the client
	// has been sent it and the connection closed); nil otherwise.
	ended atomic.Pointer[smtp.SMTPError]
}

type frontConfig struct {
	hostname string
	tls      *tls.Config
	timeout  time.Duration
	maxSize  int64
	metrics  *Metrics
	log      *slog.Logger
}

// minDataRate is the slowest average pace, in octets a second, at which
// the largest message allowed may arrive. The idle timeout alone is
// renewed by every read: a client sending a byte now and then would hold
// its connection, and a slot of the shutdown's grace, for ever.
const minDataRate = 64 << 10

// dataDeadline is how long the transfer of one message may take from DATA
// (or the transaction's first BDAT chunk) to its end: the idle timeout plus
// the size limit at minDataRate. With the defaults (5 minutes, 35 MiB) that
// is 5 min + 560 s, about 14 minutes; 0 when there is no size limit.
func dataDeadline(timeout time.Duration, maxSize int64) time.Duration {
	if maxSize <= 0 {
		return 0
	}
	return timeout + time.Duration(float64(maxSize)/minDataRate*float64(time.Second))
}

// frontBufSize holds a command line before TLS (maxPreTLSLine) and the
// commands after it; a message is read through a larger buffer.
const frontBufSize = 8 << 10

func newFrontConn(g *guardConn, cfg *frontConfig, implicitTLS *tls.Conn) *frontConn {
	f := &frontConn{guardConn: g, cfg: cfg, buf: make([]byte, frontBufSize)}
	if implicitTLS != nil {
		f.sec = implicitTLS
	}
	return f
}

// errPreTLSEnded ends a session that quit or failed before TLS.
var errPreTLSEnded = errors.New("session ended before TLS")

func (f *frontConn) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.ready {
		if f.greetRest {
			// The rest of go-smtp's greeting, should it come in pieces.
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				return len(p), nil
			}
			f.greetRest = false
			n, err := f.sec.Write(p[i+1:])
			return i + 1 + n, err
		}
		return f.sec.Write(p)
	}
	// go-smtp's first write is its greeting: time for TLS.
	f.ready = true
	if tc, ok := f.sec.(*tls.Conn); ok {
		if err := f.handshake(tc); err != nil {
			f.err = err
			return 0, err
		}
		return tc.Write(p)
	}
	if err := f.beforeTLS(); err != nil {
		f.err = err
		return 0, err
	}
	if i := bytes.IndexByte(p, '\n'); i < 0 {
		f.greetRest = true
	} else if i+1 < len(p) {
		n, err := f.sec.Write(p[i+1:])
		return i + 1 + n, err
	}
	return len(p), nil
}

func (f *frontConn) handshake(tc *tls.Conn) error {
	tc.SetDeadline(time.Now().Add(f.cfg.timeout))
	defer tc.SetDeadline(time.Time{})
	if err := tc.Handshake(); err != nil {
		f.guardConn.countFailure()
		if f.cfg.log != nil {
			f.cfg.log.Info("TLS handshake with a client failed", "remote", f.guardConn.RemoteAddr().String(), "err", err)
		}
		return fmt.Errorf("TLS handshake: %w", err)
	}
	return nil
}

// maxPreTLSLine bounds a command line before TLS: longer than RFC 5321's 512
// octets is answered 500; this much without a line end closes the session.
const maxPreTLSLine = 4096

// beforeTLS is the session on the submission port until STARTTLS has
// succeeded. It returns nil with f.sec set, or why the session ended.
func (f *frontConn) beforeTLS() error {
	g := f.guardConn
	reply := func(format string, args ...any) error {
		g.SetWriteDeadline(time.Now().Add(f.cfg.timeout))
		_, err := fmt.Fprintf(g, format+"\r\n", args...)
		return err
	}
	if err := reply("220 %s ESMTP Service Ready", f.cfg.hostname); err != nil {
		return err // an early talker, or gone
	}
	f.preTLSUntil = time.Now().Add(min(f.cfg.timeout, maxPreTLSTime))
	errs := 0
	for commands := 0; ; commands++ {
		if commands >= maxPreTLSCommands {
			f.cfg.metrics.refused.WithLabelValues("command", "too_many_errors").Inc()
			reply("421 4.7.0 Too many commands before STARTTLS, closing connection")
			return errPreTLSEnded
		}
		line, err := f.preTLSLine()
		if errors.Is(err, errLineTooLong) {
			reply("500 5.5.2 Line too long, closing connection")
			return err
		}
		if err != nil {
			return err
		}
		verb, arg, _ := strings.Cut(line, " ")
		arg = strings.TrimSpace(arg)
		hello := strings.EqualFold(verb, "EHLO") || strings.EqualFold(verb, "HELO")
		var refusal *smtp.SMTPError // a refusal, counted towards maxSessionErrors
		stage := "command"
		switch {
		case len(line)+2 > maxCommandLine:
			refusal = errLongCommand
			if hello {
				stage = "ehlo"
			}
		case hello && arg == "":
			refusal = errHelloArgument
		case strings.EqualFold(verb, "EHLO"):
			err = reply("250-%s Hello %s\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE %d\r\n250 STARTTLS", f.cfg.hostname, textutil.OneLine(arg), f.cfg.maxSize)
		case strings.EqualFold(verb, "HELO"):
			err = reply("250 %s Hello %s", f.cfg.hostname, textutil.OneLine(arg))
		case strings.EqualFold(line, "STARTTLS"):
			if err := reply("220 2.0.0 Ready to start TLS"); err != nil {
				return err
			}
			// Whatever the client sent behind STARTTLS was sent in clear
			// and would run inside TLS (CVE-2011-0411): dropped.
			f.r, f.w = 0, 0
			tc := tls.Server(g, f.cfg.tls)
			if err := f.handshake(tc); err != nil {
				return err
			}
			f.sec = tc
			return nil
		case strings.EqualFold(verb, "NOOP"):
			err = reply("250 2.0.0 OK")
		case strings.EqualFold(line, "RSET"):
			err = reply("250 2.0.0 Session reset")
		case strings.EqualFold(line, "QUIT"):
			reply("221 2.0.0 Bye")
			return errPreTLSEnded
		case strings.EqualFold(verb, "AUTH"):
			refusal, stage = errNeedTLS, "auth"
		case strings.EqualFold(verb, "MAIL") || strings.EqualFold(verb, "RCPT"):
			// As inside TLS without a login (DESIGN.md's reply table).
			refusal, stage = errAuthRequired, strings.ToLower(verb)
		default:
			refusal = errTLSFirst
		}
		if refusal != nil {
			f.cfg.metrics.refused.WithLabelValues(stage, refusalReason(stage, refusal, refusal)).Inc()
			if errs++; errs >= maxSessionErrors {
				refusal = errTooManyErrors
			}
			err = reply("%s", describe(refusal))
			if refusal == errTooManyErrors {
				return errPreTLSEnded
			}
		}
		if err != nil {
			return err
		}
	}
}

// Limits of the plaintext dialogue before STARTTLS (a mail client needs two
// or three commands and a moment).
const (
	maxPreTLSCommands = 20
	maxPreTLSTime     = time.Minute
)

var (
	errTLSFirst      = smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")
	errHelloArgument = smtpErr(501, smtp.EnhancedCode{5, 5, 2}, "Domain/address argument required")
	errLineTooLong   = errors.New("command line too long")
)

// preTLSLine reads one command line from the socket, without its line end.
func (f *frontConn) preTLSLine() (string, error) {
	for {
		if i := bytes.IndexByte(f.buf[f.r:f.w], '\n'); i >= 0 {
			if i >= maxPreTLSLine {
				return "", errLineTooLong
			}
			line := f.buf[f.r : f.r+i]
			f.r += i + 1
			return string(bytes.TrimSuffix(line, []byte("\r"))), nil
		}
		if f.w-f.r >= maxPreTLSLine {
			return "", errLineTooLong
		}
		f.guardConn.SetReadDeadline(f.preTLSUntil)
		if err := f.fill(f.guardConn); err != nil {
			return "", err
		}
	}
}

// fill reads more of the client's bytes into buf, keeping the unread ones.
func (f *frontConn) fill(from io.Reader) error {
	if f.r > 0 {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	if f.w == len(f.buf) {
		return errLineTooLong // unreachable: callers consume before the buffer fills
	}
	n, err := from.Read(f.buf[f.w:])
	f.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// Read gives go-smtp the client's bytes, at most one line at a time.
func (f *frontConn) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.readErr != nil {
		return 0, f.readErr
	}
	if len(f.inject) > 0 {
		n := copy(p, f.inject)
		f.inject = f.inject[n:]
		return n, nil
	}
	if f.sec == nil {
		f.err = errPreTLSEnded
		return 0, f.err
	}
	if f.r == f.w {
		inTransfer := f.transferUntil.Load() != 0
		if inTransfer {
			// BDAT chunks: as bodyReader does for DATA.
			f.guardConn.SetReadDeadline(f.readDeadline(time.Now().Add(f.cfg.timeout)))
		}
		if err := f.fill(f.sec); err != nil {
			if inTransfer && err == io.EOF {
				// go-smtp would take a chunk cut short for a whole one.
				err = io.ErrUnexpectedEOF
			}
			if f.timedOut(err) {
				return 0, f.readErr
			}
			return 0, err
		}
	}
	b := f.buf[f.r:f.w]
	end := bytes.IndexByte(b, '\n')
	if end >= 0 {
		b = b[:end+1]
	}
	n := copy(p, b)
	f.noteLine(b[:n])
	f.r += n
	return n, nil
}

// noteLine keeps track of whether the last command line go-smtp got was
// DATA: only then is the message read by bodyReader.
func (f *frontConn) noteLine(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		part := b
		if i >= 0 {
			part = b[:i]
		}
		f.lineLen += copy(f.line[min(f.lineLen, len(f.line)):], part)
		if i < 0 {
			return
		}
		line := bytes.TrimRight(f.line[:min(f.lineLen, len(f.line))], "\r")
		if len(line) >= 4 && bytes.EqualFold(line[:4], []byte("BDAT")) {
			f.chunkSeen = true
		}
		f.dataIssued.Store(!f.chunkSeen && f.lineLen <= len("DATA\r") && bytes.EqualFold(line, []byte("DATA")))
		f.lineLen = 0
		b = b[i+1:]
	}
}

// SetReadDeadline is go-smtp's deadline for its next read, a command line
// or a BDAT chunk: no later than the end of a transfer in progress.
func (f *frontConn) SetReadDeadline(t time.Time) error {
	return f.guardConn.SetReadDeadline(f.readDeadline(t))
}

// readDeadline is idle, or the transfer's deadline if that comes first.
func (f *frontConn) readDeadline(idle time.Time) time.Time {
	if u := f.transferUntil.Load(); u != 0 {
		if until := time.Unix(0, u); idle.IsZero() || until.Before(idle) {
			return until
		}
	}
	return idle
}

// beginTransfer starts the clock of a message's transfer (dataDeadline);
// endTransfer stops it. Both accept a nil frontConn (tests' pipes).
func (f *frontConn) beginTransfer() {
	if f == nil {
		return
	}
	f.ended.Store(nil)
	if d := dataDeadline(f.cfg.timeout, f.cfg.maxSize); d > 0 {
		f.transferUntil.Store(time.Now().Add(d).UnixNano())
	}
}

func (f *frontConn) endTransfer() {
	if f != nil {
		f.transferUntil.Store(0)
	}
}

// endedBy is the reply that ended the last transfer, nil if none did.
func (f *frontConn) endedBy() *smtp.SMTPError {
	if f == nil {
		return nil
	}
	return f.ended.Load()
}

// timedOut reports whether err is a read of a message's transfer timing
// out: nothing for the idle timeout, or the transfer's deadline passing.
// Then the client is told which (errDataIdle, errDataDeadline) and the
// connection is closed: the rest of the message may still be on its way
// and cannot be told from commands. Only go-smtp's connection goroutine
// reads, so the reply written here is not interleaved with one of go-smtp's;
// whatever go-smtp answers after it meets a closed connection (it would
// have said "554 5.0.0 Error: transaction failed: read tcp ...: i/o
// timeout" for a BDAT chunk).
func (f *frontConn) timedOut(err error) bool {
	u := f.transferUntil.Load()
	if u == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	reply := errDataIdle
	if !time.Now().Before(time.Unix(0, u)) {
		reply = errDataDeadline
	}
	if f.ended.CompareAndSwap(nil, reply) {
		if f.cfg.log != nil {
			f.cfg.log.Info("a message did not arrive in time; closing the connection", "reply", describe(reply),
				"idle_timeout", f.cfg.timeout, "transfer_limit", dataDeadline(f.cfg.timeout, f.cfg.maxSize))
		}
		f.sec.SetWriteDeadline(time.Now().Add(min(f.cfg.timeout, 10*time.Second)))
		fmt.Fprintf(f.sec, "%s\r\n", describe(reply))
		f.guardConn.Close()
		f.readErr = net.ErrClosed
	}
	return true
}

// frontOf returns the frontConn under a session's connection, if any.
func frontOf(c net.Conn) *frontConn {
	f, _ := c.(*frontConn)
	return f
}

// bodyReader reads a message's DATA from the frontConn: dot-unstuffed, up
// to the line "." that ends it, which it consumes. As go-smtp's reader, it
// leaves CRLF as it is (bare CR and LF are strictReader's to refuse) and
// begins a line only after CRLF; unlike it, a "." then a bare CR at a line
// start is passed on as the bare CR, which strictReader then refuses.
type bodyReader struct {
	f           *frontConn
	atLineStart bool
	afterCR     bool
	left        int64 // octets the message may still have
	done        bool
	err         error
}

// body starts reading the message go-smtp has just answered 354 to, or
// returns nil if the current command is not DATA (BDAT, or not a frontConn).
func (f *frontConn) body() *bodyReader {
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
