package submission

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// wire is the connection go-smtp serves a client on. sealpost holds the
// session's plaintext itself, so that a message is read off the wire in
// blocks instead of through go-smtp's DATA reader, which takes it a byte at
// a time (for a practice's large attachments a large part of the relay's
// CPU: the README's speed section):
//
//   - On the submission port it answers the client before TLS itself
//     (greeting, EHLO, STARTTLS; everything else is refused until TLS) and
//     does the handshake (pretls.go); go-smtp starts only then, inside TLS,
//     and its greeting is dropped: the client had sealpost's. On the
//     implicit-TLS port the handshake comes first, with a deadline.
//   - It gives go-smtp at most one command line per Read, so nothing of a
//     message sits in go-smtp's buffer when DATA is answered 354, and
//     Session.Data reads the message from here (body.go).
//   - Once the message has been read to its end, go-smtp is handed a lone
//     ".\r\n": its own DATA reader meets the end at once and sends the reply.
//
// What this relies on in go-smtp is pinned by gosmtp_contract_test.go.
// Only go-smtp's connection goroutine reads and writes (but see dataIssued);
// Close may come from anywhere and closes the socket underneath.
type wire struct {
	*socket   // addresses, deadlines, Close
	cfg       *wireConfig
	sec       net.Conn // the session inside TLS; nil until the handshake
	ready     bool     // TLS is up; go-smtp's greeting is handled
	greetRest bool     // still dropping go-smtp's greeting line
	err       error    // why the session ended before TLS
	readErr   error    // why no more commands can be read (after a broken DATA)

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
	ended atomic.Pointer[reply]
	// ok is the session's own words for the 250 go-smtp writes next, to a
	// MAIL or RCPT it accepted: go-smtp's ("Roger, accepting mail from",
	// "I'll make sure <x> gets this") promise what the relay cannot.
	ok *reply
}

// wireConfig is what every wire of a Server shares.
type wireConfig struct {
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

// commandBufSize holds a command line before TLS (maxPreTLSLine) and the
// commands after it; a message is read through a larger buffer.
const commandBufSize = 8 << 10

func newWire(sock *socket, cfg *wireConfig, implicitTLS *tls.Conn) *wire {
	f := &wire{socket: sock, cfg: cfg, buf: make([]byte, commandBufSize)}
	if implicitTLS != nil {
		f.sec = implicitTLS
	}
	return f
}

func (f *wire) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.ready {
		if ok := f.ok; ok != nil {
			f.ok = nil
			if bytes.HasPrefix(p, []byte("250 ")) && bytes.IndexByte(p, '\n') == len(p)-1 {
				if err := ok.write(f.sec); err != nil {
					return 0, err
				}
				return len(p), nil
			}
		}
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

// handshake does TLS with the client, within the idle timeout; a failure
// counts (Metrics.tlsFailed) once the client's hello arrived.
func (f *wire) handshake(tc *tls.Conn) error {
	tc.SetDeadline(time.Now().Add(f.cfg.timeout))
	defer tc.SetDeadline(time.Time{})
	if err := tc.Handshake(); err != nil {
		f.socket.countFailure()
		if f.cfg.log != nil {
			f.cfg.log.Info("TLS handshake with a client failed", "remote", f.socket.RemoteAddr().String(), "err", err)
		}
		return fmt.Errorf("TLS handshake: %w", err)
	}
	return nil
}

// fill reads more of the client's bytes into buf, keeping the unread ones.
func (f *wire) fill(from io.Reader) error {
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
func (f *wire) Read(p []byte) (int, error) {
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
			f.socket.SetReadDeadline(f.readDeadline(time.Now().Add(f.cfg.timeout)))
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
func (f *wire) noteLine(b []byte) {
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
func (f *wire) SetReadDeadline(t time.Time) error {
	return f.socket.SetReadDeadline(f.readDeadline(t))
}

// readDeadline is idle, or the transfer's deadline if that comes first.
func (f *wire) readDeadline(idle time.Time) time.Time {
	if u := f.transferUntil.Load(); u != 0 {
		if until := time.Unix(0, u); idle.IsZero() || until.Before(idle) {
			return until
		}
	}
	return idle
}

// beginTransfer starts the clock of a message's transfer (dataDeadline);
// endTransfer stops it. Both accept a nil wire (tests' pipes).
func (f *wire) beginTransfer() {
	if f == nil {
		return
	}
	f.ended.Store(nil)
	if d := dataDeadline(f.cfg.timeout, f.cfg.maxSize); d > 0 {
		f.transferUntil.Store(time.Now().Add(d).UnixNano())
	}
}

func (f *wire) endTransfer() {
	if f != nil {
		f.transferUntil.Store(0)
	}
}

// endedBy is the reply that ended the last transfer, nil if none did.
func (f *wire) endedBy() *reply {
	if f == nil {
		return nil
	}
	return f.ended.Load()
}

// timedOut reports whether err is a read of a message's transfer timing
// out: nothing for the idle timeout, or the transfer's deadline passing.
// Then the client is told which (replyDataIdle, replyDataDeadline) and the
// connection is closed: the rest of the message may still be on its way
// and cannot be told from commands. Only go-smtp's connection goroutine
// reads, so the reply written here is not interleaved with one of go-smtp's;
// whatever go-smtp answers after it meets a closed connection (it would
// have said "554 5.0.0 Error: transaction failed: read tcp ...: i/o
// timeout" for a BDAT chunk).
func (f *wire) timedOut(err error) bool {
	u := f.transferUntil.Load()
	if u == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	r := replyDataIdle
	if !time.Now().Before(time.Unix(0, u)) {
		r = replyDataDeadline
	}
	if f.ended.CompareAndSwap(nil, r) {
		if f.cfg.log != nil {
			f.cfg.log.Info("a message did not arrive in time; closing the connection", "reply", r.String(),
				"idle_timeout", f.cfg.timeout, "transfer_limit", dataDeadline(f.cfg.timeout, f.cfg.maxSize))
		}
		f.sec.SetWriteDeadline(time.Now().Add(min(f.cfg.timeout, 10*time.Second)))
		r.write(f.sec)
		f.socket.Close()
		f.readErr = net.ErrClosed
	}
	return true
}

// answerOK makes the next 250 go-smtp writes (to the MAIL or RCPT being
// accepted) r instead. It accepts a nil wire (tests' pipes).
func (f *wire) answerOK(r *reply) {
	if f != nil {
		f.ok = r
	}
}

// wireOf returns the wire under a session's connection, if any.
func wireOf(c net.Conn) *wire {
	f, _ := c.(*wire)
	return f
}
