package submission

// What the wire (wire.go, pretls.go, body.go) and the session rely on in
// go-smtp's server, each pinned by a test that fails when an upgrade of
// go-smtp changes it. The tests drive a go-smtp server over a connection
// that hands it the client's input one line per Read, as the wire does, and
// records what go-smtp does with it, in order.

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// contractConn is the connection go-smtp serves: Read hands it the next line
// the test sends, Write passes what it writes to the test, and every Read,
// Write and read deadline is noted in order.
type contractConn struct {
	lines  chan string
	writes chan string
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	events []string // "read ...", "write ...", "read-deadline"
}

func newContractConn() *contractConn {
	return &contractConn{lines: make(chan string), writes: make(chan string, 64), closed: make(chan struct{})}
}

func (c *contractConn) note(e string) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}

// log returns the events so far.
func (c *contractConn) log() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.events...)
}

func (c *contractConn) Read(p []byte) (int, error) {
	select {
	case l := <-c.lines:
		c.note("read " + l)
		return copy(p, l), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *contractConn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.note("write " + string(p))
	c.writes <- string(p)
	return len(p), nil
}

func (c *contractConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *contractConn) SetReadDeadline(time.Time) error {
	c.note("read-deadline")
	return nil
}
func (c *contractConn) SetDeadline(time.Time) error      { return nil }
func (c *contractConn) SetWriteDeadline(time.Time) error { return nil }
func (c *contractConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *contractConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// send hands go-smtp one line.
func (c *contractConn) send(t *testing.T, line string) {
	t.Helper()
	select {
	case c.lines <- line:
	case <-time.After(5 * time.Second):
		t.Fatalf("go-smtp does not read %q", line)
	}
}

// reply returns go-smtp's next Write.
func (c *contractConn) reply(t *testing.T) string {
	t.Helper()
	select {
	case w := <-c.writes:
		return w
	case <-time.After(5 * time.Second):
		t.Fatal("go-smtp writes nothing")
		return ""
	}
}

// replyLines returns go-smtp's next reply, every line of it.
func (c *contractConn) replyLines(t *testing.T) string {
	t.Helper()
	var all strings.Builder
	for {
		l := c.reply(t)
		all.WriteString(l)
		if len(l) < 4 || l[3] != '-' {
			return all.String()
		}
	}
}

// contractSession answers as the test says, and notes what go-smtp asked.
type contractSession struct {
	conn   *smtp.Conn
	mail   func(from string) error
	rcpt   error
	auth   error
	data   func(r io.Reader) error
	logout chan struct{}
}

func (s *contractSession) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }
func (s *contractSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error { return s.auth }), nil
}
func (s *contractSession) Mail(from string, _ *smtp.MailOptions) error { return s.mail(from) }
func (s *contractSession) Rcpt(string, *smtp.RcptOptions) error        { return s.rcpt }
func (s *contractSession) Data(r io.Reader) error                      { return s.data(r) }
func (s *contractSession) Reset()                                      {}
func (s *contractSession) Logout() error {
	close(s.logout)
	return nil
}

// contractServer serves c as the submission server configures go-smtp,
// with newSession deciding each session.
func contractServer(t *testing.T, c net.Conn, newSession func(*smtp.Conn) (smtp.Session, error)) {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(newSession))
	srv.Domain = "contract.test"
	srv.MaxMessageBytes = 1 << 20
	srv.MaxLineLength = maxBodyLineOctets + 2
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.AllowInsecureAuth = true
	conns := make(chan net.Conn, 1)
	conns <- c
	l := &pipeListener{conns: conns, done: make(chan struct{})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

func newContractSession(c *smtp.Conn) *contractSession {
	return &contractSession{conn: c, logout: make(chan struct{}), data: func(io.Reader) error { return nil },
		mail: func(string) error { return nil }}
}

// TestGoSMTPGreetsFirst: on a new connection go-smtp's first act is to write
// its greeting, one line in one Write, before it reads anything. The wire
// does TLS on that first Write and drops the greeting on the STARTTLS port
// (the client had sealpost's).
func TestGoSMTPGreetsFirst(t *testing.T) {
	c := newContractConn()
	contractServer(t, c, func(sc *smtp.Conn) (smtp.Session, error) { return newContractSession(sc), nil })
	if got := c.reply(t); got != "220 contract.test ESMTP Service Ready\r\n" {
		t.Fatalf("first write %q", got)
	}
	if log := c.log(); log[0] != "write 220 contract.test ESMTP Service Ready\r\n" {
		t.Fatalf("go-smtp did %q before greeting", log[0])
	}
}

// TestGoSMTPDataEndsAtInjectedDot: with one command line per Read, go-smtp
// reads nothing between the DATA line and Session.Data, and answers 354
// before calling it: nothing of the message is in go-smtp's buffer, and the
// wire reads it (body.go). When Data returns without reading, go-smtp takes
// a lone ".\r\n" as the end of its DATA, writes the reply Data returned as
// it is, and reads the next command.
func TestGoSMTPDataEndsAtInjectedDot(t *testing.T) {
	c := newContractConn()
	var atData []string
	contractServer(t, c, func(sc *smtp.Conn) (smtp.Session, error) {
		s := newContractSession(sc)
		s.data = func(io.Reader) error {
			atData = c.log()
			return replyAccepted.with("0123456789abc").smtp()
		}
		return s, nil
	})
	c.reply(t)
	for _, line := range []string{"EHLO client.test\r\n", "MAIL FROM:<a@b.example>\r\n", "RCPT TO:<c@d.example>\r\n"} {
		c.send(t, line)
		c.replyLines(t)
	}
	c.send(t, "DATA\r\n")
	if got := c.reply(t); !strings.HasPrefix(got, "354 ") {
		t.Fatalf("DATA: %q", got)
	}
	c.send(t, ".\r\n")
	if got := c.reply(t); got != "250 2.0.0 OK: queued as 0123456789abc\r\n" {
		t.Fatalf("reply after the injected end of data: %q", got)
	}
	if n := len(atData); n < 2 || atData[n-2] != "read DATA\r\n" || !strings.HasPrefix(atData[n-1], "write 354 ") {
		t.Fatalf("before Session.Data go-smtp did %q; want the DATA line read, then 354, then nothing", atData[max(0, n-3):])
	}
	c.send(t, "NOOP\r\n")
	if got := c.reply(t); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("NOOP after the message: %q", got)
	}
}

// TestGoSMTPReadDeadlineBeforeEachCommand: go-smtp sets the connection's
// read deadline before it reads each command line; the wire makes it no
// later than the end of a transfer in progress (readDeadline).
func TestGoSMTPReadDeadlineBeforeEachCommand(t *testing.T) {
	c := newContractConn()
	contractServer(t, c, func(sc *smtp.Conn) (smtp.Session, error) { return newContractSession(sc), nil })
	c.reply(t)
	for _, line := range []string{"EHLO client.test\r\n", "NOOP\r\n", "RSET\r\n"} {
		c.send(t, line)
		c.replyLines(t)
	}
	log := c.log()
	deadline := false
	for _, e := range log {
		switch {
		case e == "read-deadline":
			deadline = true
		case strings.HasPrefix(e, "read "):
			if !deadline {
				t.Fatalf("go-smtp read %q without a read deadline first: %q", e, log)
			}
			deadline = false
		}
	}
}

// TestGoSMTPRepliesVerbatim: an *smtp.SMTPError from NewSession, Mail,
// Rcpt, the SASL server or Data is written as it is (code, enhanced code,
// text: the reply table's replies reach the client unchanged), a one-line
// reply in one Write (closeAfterReply closes the connection after the
// Write that carries it). Any other error becomes go-smtp's own reply with
// the error's text in it: why every error goes through the table first.
func TestGoSMTPRepliesVerbatim(t *testing.T) {
	refuse := func(code int, text string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 7, 1}, Message: text}
	}
	c := newContractConn()
	contractServer(t, c, func(sc *smtp.Conn) (smtp.Session, error) {
		if sc.Hostname() == "refused.test" {
			return nil, refuse(421, "not now")
		}
		s := newContractSession(sc)
		s.mail = func(from string) error {
			switch from {
			case "plain@b.example":
				return errors.New("internal detail")
			case "refused@b.example":
				return refuse(550, "not yours")
			}
			return nil
		}
		s.rcpt, s.auth = refuse(551, "not there"), refuse(535, "wrong")
		s.data = func(io.Reader) error { return refuse(554, "not this") }
		return s, nil
	})
	c.reply(t)
	for _, tt := range []struct{ line, want string }{
		{"EHLO refused.test\r\n", "421 4.7.1 not now\r\n"},
		{"EHLO client.test\r\n", ""},
		{"AUTH PLAIN AHUAcA==\r\n", "535 5.7.1 wrong\r\n"},
		{"MAIL FROM:<refused@b.example>\r\n", "550 5.7.1 not yours\r\n"},
		{"MAIL FROM:<a@b.example>\r\n", ""},
		{"RCPT TO:<c@d.example>\r\n", "551 5.7.1 not there\r\n"},
		{"RSET\r\n", ""},
		{"MAIL FROM:<plain@b.example>\r\n", "451 4.0.0 internal detail\r\n"},
	} {
		c.send(t, tt.line)
		if tt.want == "" {
			c.replyLines(t)
			continue
		}
		got := c.reply(t)
		if got != tt.want {
			t.Errorf("%q: go-smtp wrote %q, want %q in one write", tt.line, got, tt.want)
		}
	}
}

// TestGoSMTPTLSUnseenBeneathTheWire: go-smtp tells TLS by the connection's
// type, so beneath the wire it sees none: without a TLSConfig it offers no
// STARTTLS, and with AllowInsecureAuth it offers and takes AUTH with the
// session's mechanisms (which the session offers only inside TLS). The
// session is made at the first EHLO, Hostname already set to its argument
// (helloTooLong), and a later EHLO only updates Hostname.
func TestGoSMTPTLSUnseenBeneathTheWire(t *testing.T) {
	c := newContractConn()
	var sessions int
	var sess *contractSession
	hosts := make(chan string, 4)
	contractServer(t, c, func(sc *smtp.Conn) (smtp.Session, error) {
		sessions++
		hosts <- sc.Hostname()
		sess = newContractSession(sc)
		return sess, nil
	})
	c.reply(t)
	c.send(t, "EHLO first.test\r\n")
	all := c.replyLines(t)
	if !strings.Contains(all, "AUTH PLAIN LOGIN") || strings.Contains(all, "STARTTLS") {
		t.Errorf("EHLO reply beneath the wire: %q; want AUTH PLAIN LOGIN and no STARTTLS", all)
	}
	if h := <-hosts; h != "first.test" {
		t.Errorf("Hostname at NewSession: %q", h)
	}
	c.send(t, "AUTH PLAIN AHUAcA==\r\n")
	if got := c.reply(t); !strings.HasPrefix(got, "235 ") {
		t.Errorf("AUTH beneath the wire: %q", got)
	}
	c.send(t, "EHLO second.test\r\n")
	c.replyLines(t)
	if sessions != 1 || sess.conn.Hostname() != "second.test" {
		t.Errorf("after a second EHLO: %d sessions, Hostname %q", sessions, sess.conn.Hostname())
	}
}

// TestGoSMTPBDATWhileDataRuns: for BDAT go-smtp calls Session.Data before it
// reads the chunk, and reads the chunk through the connection while Data
// runs on another goroutine: the wire watches every command line go-smtp
// reads (dataIssued is atomic for it) and keeps the transfer's deadline on
// those reads.
func TestGoSMTPBDATWhileDataRuns(t *testing.T) {
	c := newContractConn()
	entered := make(chan struct{})
	got := make(chan string, 1)
	contractServer(t, c, func(sc *smtp.Conn) (smtp.Session, error) {
		s := newContractSession(sc)
		s.data = func(r io.Reader) error {
			close(entered)
			b, err := io.ReadAll(r)
			got <- string(b)
			return err
		}
		return s, nil
	})
	c.reply(t)
	for _, line := range []string{"EHLO client.test\r\n", "MAIL FROM:<a@b.example>\r\n", "RCPT TO:<c@d.example>\r\n"} {
		c.send(t, line)
		c.replyLines(t)
	}
	c.send(t, "BDAT 5 LAST\r\n")
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("go-smtp waits for the chunk before it calls Session.Data")
	}
	c.send(t, "hello")
	if b := <-got; b != "hello" {
		t.Fatalf("Data read %q", b)
	}
	if r := c.reply(t); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("after the chunk: %q", r)
	}
}

// TestGoSMTPQuietOnClosedConnection: when a read fails with net.ErrClosed
// (the wire closed the connection after its own 421 for a message that did
// not arrive in time), go-smtp ends the session and writes nothing more.
func TestGoSMTPQuietOnClosedConnection(t *testing.T) {
	c := newContractConn()
	sessions := make(chan *contractSession, 1)
	contractServer(t, c, func(sc *smtp.Conn) (smtp.Session, error) {
		s := newContractSession(sc)
		sessions <- s
		return s, nil
	})
	c.reply(t)
	c.send(t, "EHLO client.test\r\n")
	c.replyLines(t)
	before := len(c.log())
	c.Close()
	select {
	case <-(<-sessions).logout:
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end")
	}
	for _, e := range c.log()[before:] {
		if strings.HasPrefix(e, "write ") {
			t.Fatalf("go-smtp wrote %q after the connection closed", e)
		}
	}
}

// TestGoSMTPAcceptsInOneLine: when Session.Mail or Session.Rcpt returns
// nil, go-smtp's next act is one Write of one line beginning "250 ": the
// wire puts the session's own reply (answerOK) in its place, and a change
// here would let go-smtp's words ("Roger, accepting mail from", "I'll make
// sure <x> gets this") through.
func TestGoSMTPAcceptsInOneLine(t *testing.T) {
	c := newContractConn()
	contractServer(t, c, func(sc *smtp.Conn) (smtp.Session, error) { return newContractSession(sc), nil })
	c.reply(t)
	c.send(t, "EHLO client.test\r\n")
	c.replyLines(t)
	for _, line := range []string{"MAIL FROM:<a@b.example>\r\n", "RCPT TO:<c@d.example>\r\n"} {
		c.send(t, line)
		got := c.reply(t)
		if !strings.HasPrefix(got, "250 ") || strings.Index(got, "\n") != len(got)-1 {
			t.Fatalf("%s: go-smtp wrote %q; want one line starting 250", strings.TrimSpace(line), got)
		}
	}
}
