package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

func TestSubmitToOutbox(t *testing.T) {
	r := startRelay(t, relayOpts{})
	c := r.login(t)
	msg := testMessage(testFrom, "colleague@practice.example", "hello", "Body text.")
	if err := send(c, testFrom, []string{"colleague@practice.example", "second@practice.example"}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	var files []string
	waitFor(t, "two outbox files", func() bool { files = outboxFiles(t, r.dataDir); return len(files) == 2 })
	var delivered []string
	for _, f := range files {
		if !strings.HasPrefix(f, "Return-Path: <"+testFrom+">\r\nDelivered-To: ") {
			t.Errorf("outbox file does not start with Return-Path and Delivered-To:\n%.200s", f)
		}
		line := strings.SplitN(f, "\r\n", 3)[1]
		delivered = append(delivered, strings.TrimPrefix(line, "Delivered-To: "))
		if !strings.Contains(f, "Received: by relay.test (sealpost) with ESMTPSA id ") || !strings.Contains(f, "\r\n\r\nBody text.\r\n") {
			t.Errorf("outbox file lacks the trace header or the body:\n%s", f)
		}
	}
	if strings.Join(delivered, ",") != "colleague@practice.example,second@practice.example" &&
		strings.Join(delivered, ",") != "second@practice.example,colleague@practice.example" {
		t.Errorf("Delivered-To lines = %v", delivered)
	}
	if n := len(r.archive.messages); n != 1 {
		t.Fatalf("archive has %d messages, want 1", n)
	}
	id := r.archive.messages[0].ID
	waitFor(t, "delivered events for both recipients", func() bool {
		r.archive.mu.Lock()
		defer r.archive.mu.Unlock()
		n := 0
		for _, e := range r.archive.events {
			if e.MessageID == id && e.Kind == "delivered" {
				n += len(e.Recipients)
			}
		}
		return n == 2
	})
	waitFor(t, "empty queue", func() bool { return len(r.Queue()) == 0 })
}

// TestBodyLineLimit: body lines may be long (the rules re-encode them) but
// not without end.
func TestBodyLineLimit(t *testing.T) {
	r := startRelay(t, relayOpts{maxBytes: 4 << 20})
	c := r.login(t)
	err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", strings.Repeat("y", maxBodyLineOctets+1)))
	if got := smtpCode(err); got != "554 5.6.0" || !strings.Contains(err.Error(), "1 MiB") {
		t.Fatalf("a 1 MiB line: %s (%v), want 554 5.6.0", got, err)
	}
}

// TestReplies is the catalogue of what a therapist's client sees when
// something is wrong (DESIGN.md, SMTP replies).
func TestReplies(t *testing.T) {
	r := startRelay(t, relayOpts{maxBytes: 4096})
	r.policy.decide = func(rcpt string) (record.Decision, error) {
		switch rcpt {
		case "client@example.org":
			return record.Decision{Protection: record.Refused, Reason: "<client@example.org>: no consent on file for unencrypted email and no OpenPGP key; record the client's consent (sealpost consent add) or import their key"}, nil
		case "down@example.org":
			return record.Decision{}, fmt.Errorf("registry: %w", rules.ErrUnavailable)
		}
		return record.Decision{Protection: record.Internal}, nil
	}
	ok := testMessage(testFrom, "a@practice.example", "s", "hello")
	tests := []struct {
		name string
		run  func(c *smtp.Client) error
		want string
		text string // part of the reply text
	}{
		{"MAIL before AUTH", func(c *smtp.Client) error { return c.Mail(testFrom, nil) }, "530 5.7.0", "Authentication required"},
		{"bad password", func(c *smtp.Client) error { return c.Auth(sasl.NewPlainClient("", testUser, "wrong")) }, "535 5.7.8", "credentials invalid"},
		{"unknown user", func(c *smtp.Client) error { return c.Auth(sasl.NewPlainClient("", "nobody", "wrong")) }, "535 5.7.8", ""},
		{"authz identity of another user", func(c *smtp.Client) error { return c.Auth(sasl.NewPlainClient("admin", testUser, testPassword)) }, "535 5.7.8", ""},
		{"sender not the account's", func(c *smtp.Client) error {
			return loginThen(c, func() error { return c.Mail("boss@practice.example", nil) })
		}, "550 5.7.1", "<boss@practice.example> is not an address of account therapist"},
		{"null sender", func(c *smtp.Client) error { return loginThen(c, func() error { return c.Mail("", nil) }) }, "550 5.7.1", ""},
		{"header From not the account's", func(c *smtp.Client) error {
			return loginThen(c, func() error {
				return send(c, testFrom, []string{"a@practice.example"}, testMessage("boss@practice.example", "a@practice.example", "s", "x"))
			})
		}, "550 5.7.1", "From: header"},
		{"a second From header", func(c *smtp.Client) error {
			return loginThen(c, func() error {
				return send(c, testFrom, []string{"a@practice.example"}, "From: boss@practice.example\r\n"+testMessage(testFrom, "a@practice.example", "s", "x"))
			})
		}, "550 5.6.0", "more than one From: header"},
		{"a second Subject header", func(c *smtp.Client) error {
			return loginThen(c, func() error {
				return send(c, testFrom, []string{"a@practice.example"}, "Subject: SSN 123-45-6789\r\n"+testMessage(testFrom, "a@practice.example", "s", "x"))
			})
		}, "550 5.6.0", "more than one Subject: header"},
		{"no From header", func(c *smtp.Client) error {
			return loginThen(c, func() error {
				return send(c, testFrom, []string{"a@practice.example"}, "To: a@practice.example\r\n\r\nx\r\n")
			})
		}, "550 5.7.1", "no From: header"},
		{"refused recipient", func(c *smtp.Client) error {
			return loginThen(c, func() error { return send(c, testFrom, []string{"client@example.org"}, ok) })
		}, "550 5.7.1", "<client@example.org>: no consent on file"},
		{"registry down", func(c *smtp.Client) error {
			return loginThen(c, func() error { return send(c, testFrom, []string{"down@example.org"}, ok) })
		}, "451 4.3.0", "cannot be checked"},
		{"relay probe", func(c *smtp.Client) error {
			return loginThen(c, func() error { return send(c, testFrom, []string{"u%ext.example@practice.example"}, ok) })
		}, "550 5.1.3", "not a valid recipient"},
		{"too big", func(c *smtp.Client) error {
			return loginThen(c, func() error {
				return send(c, testFrom, []string{"a@practice.example"}, ok+strings.Repeat("x\r\n", 3000))
			})
		}, "552 5.3.4", ""},
		{"SIZE over the limit", func(c *smtp.Client) error {
			return loginThen(c, func() error { return c.Mail(testFrom, &smtp.MailOptions{Size: 5000}) })
		}, "552 5.3.4", ""},
		{"header line over 998", func(c *smtp.Client) error {
			return loginThen(c, func() error {
				return send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", strings.Repeat("s", 999), "x"))
			})
		}, "554 5.6.0", "998"},
		{"body line over 998 (the rules re-encode it)", func(c *smtp.Client) error {
			return loginThen(c, func() error {
				return send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", strings.Repeat("y", 3000)))
			})
		}, "ok", ""},
		{"AUTH LOGIN works", func(c *smtp.Client) error {
			if err := c.Auth(loginClient{testUser, testPassword}); err != nil {
				return err
			}
			return send(c, testFrom, []string{"a@practice.example"}, ok)
		}, "ok", ""},
		{"second address of the account, other case", func(c *smtp.Client) error {
			return loginThen(c, func() error {
				return send(c, "SECOND@practice.example", []string{"a@practice.example"}, testMessage("Second <second@PRACTICE.example>", "a@practice.example", "s", "x"))
			})
		}, "ok", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := r.dial(t)
			err := tt.run(c)
			if got := smtpCode(err); got != tt.want {
				t.Fatalf("reply %s (%v), want %s", got, err, tt.want)
			}
			if tt.text != "" && !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("reply %q does not say %q", err, tt.text)
			}
		})
	}
	// The refused recipient left a record that the rules worked, with the reason.
	if len(r.archive.refusals) != 1 || !strings.Contains(r.archive.refusals[0].Reason, "no consent") {
		t.Errorf("refusals archived: %+v", r.archive.refusals)
	}
	// Internal details never reach the client, and client addresses never reach the log.
	logs := r.logs.String()
	if strings.Contains(logs, "client@example.org") || strings.Contains(logs, "down@example.org") {
		t.Errorf("a client address is in the log in clear:\n%s", logs)
	}
}

func loginThen(c *smtp.Client, f func() error) error {
	if err := c.Auth(sasl.NewPlainClient("", testUser, testPassword)); err != nil {
		return err
	}
	return f()
}

// loginClient is SASL LOGIN as Outlook speaks it.
type loginClient struct{ user, pass string }

func (l loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }
func (l loginClient) Next(challenge []byte) ([]byte, error) {
	switch string(challenge) {
	case "Username:":
		return []byte(l.user), nil
	case "Password:":
		return []byte(l.pass), nil
	}
	return nil, fmt.Errorf("unexpected challenge %q", challenge)
}

// rawSession speaks SMTP by hand, for what a well-behaved client library
// will not send.
type rawSession struct {
	t    *testing.T
	conn net.Conn
	tp   *textproto.Conn
}

func rawDial(t *testing.T, addr string) *rawSession {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { conn.Close() })
	s := &rawSession{t: t, conn: conn, tp: textproto.NewConn(conn)}
	s.expect(220)
	return s
}

func (s *rawSession) cmd(line string) (int, string) {
	s.t.Helper()
	if err := s.tp.PrintfLine("%s", line); err != nil {
		s.t.Fatalf("send %q: %v", line, err)
	}
	return s.read()
}

func (s *rawSession) read() (int, string) {
	s.t.Helper()
	code, msg, err := s.tp.ReadResponse(0)
	if err != nil && code == 0 {
		s.t.Fatalf("read reply: %v", err)
	}
	return code, msg
}

func (s *rawSession) expect(code int) string {
	s.t.Helper()
	got, msg := s.read()
	if got != code {
		s.t.Fatalf("reply %d %s, want %d", got, msg, code)
	}
	return msg
}

func (s *rawSession) startTLS(pki *testPKI) {
	s.t.Helper()
	if code, msg := s.cmd("STARTTLS"); code != 220 {
		s.t.Fatalf("STARTTLS: %d %s", code, msg)
	}
	tc := tls.Client(s.conn, &tls.Config{RootCAs: pki.pool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		s.t.Fatal(err)
	}
	s.conn = tc
	s.tp = newTextConn(tc)
}

func newTextConn(c net.Conn) *textproto.Conn { return textproto.NewConn(c) }

func TestNoAuthBeforeTLS(t *testing.T) {
	r := startRelay(t, relayOpts{})
	s := rawDial(t, r.addrs.Submission.String())
	code, ehlo := s.cmd("EHLO client.test")
	if code != 250 || strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO before TLS: %d %q; want STARTTLS and no AUTH", code, ehlo)
	}
	if code, msg := s.cmd("AUTH PLAIN AHRoZXJhcGlzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk="); code != 538 || !strings.HasPrefix(msg, "5.7.11 Encryption required") {
		t.Fatalf("AUTH before TLS: %d %s", code, msg)
	}
	if code, msg := s.cmd("MAIL FROM:<" + testFrom + ">"); code != 530 {
		t.Fatalf("MAIL without AUTH: %d %s", code, msg)
	}
	s.startTLS(r.pki)
	code, ehlo = s.cmd("EHLO client.test")
	if code != 250 || !strings.Contains(ehlo, "AUTH PLAIN LOGIN") || !strings.Contains(ehlo, "SIZE 1048576") {
		t.Fatalf("EHLO after TLS: %d %q; want AUTH PLAIN LOGIN and SIZE", code, ehlo)
	}
	if code, msg := s.cmd("AUTH PLAIN !!notbase64"); code/100 != 4 && code/100 != 5 {
		t.Fatalf("malformed base64: %d %s", code, msg)
	}
	// The session survives and a correct login still works.
	if code, msg := s.cmd("AUTH PLAIN AHRoZXJhcGlzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk="); code != 235 {
		t.Fatalf("AUTH after TLS: %d %s", code, msg)
	}
}

func TestImplicitTLS(t *testing.T) {
	r := startRelay(t, relayOpts{})
	c, err := smtp.DialTLS(r.addrs.Submissions.String(), &tls.Config{RootCAs: r.pki.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", testUser, testPassword)); err != nil {
		t.Fatal(err)
	}
	if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
		t.Fatal(err)
	}
	_, err = tls.Dial("tcp", r.addrs.Submissions.String(), &tls.Config{RootCAs: r.pki.pool, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Fatal("TLS 1.1 handshake succeeded; only 1.2 and later may")
	}
	// The refusal must be the server's, not the Go client's own minimum.
	if !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.1 failed, but not because the server refused the version: %v", err)
	}
}

// TestSmuggling: every bare CR or LF is refused, so no provider can be made
// to see a second message hidden inside the first (SMTP smuggling).
func TestSmuggling(t *testing.T) {
	r := startRelay(t, relayOpts{})
	smuggled := "MAIL FROM:<" + testFrom + ">\r\nRCPT TO:<victim@practice.example>\r\nDATA\r\nFrom: " + testFrom + "\r\n\r\nsmuggled\r\n"
	tests := []struct {
		name, data string
	}{
		{"LF.LF", "x\n.\n" + smuggled},
		{"CRLF.LF", "x\r\n.\n" + smuggled},
		{"LF.CRLF", "x\n.\r\n" + smuggled},
		{"CR.CR", "x\r.\r" + smuggled},
		{"bare CR in a line", "a\rb\r\n"},
		{"NUL", "a\x00b\r\n"},
		{"starts with .LF", ".\n" + smuggled},
		// A "." then a bare CR at a line start: go-smtp's own reader drops
		// both; sealpost reads DATA itself and refuses the CR.
		{"CRLF.CR", "x\r\n.\r" + smuggled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := rawDial(t, r.addrs.Submission.String())
			s.cmd("EHLO client.test")
			s.startTLS(r.pki)
			s.cmd("EHLO client.test")
			if code, msg := s.cmd("AUTH PLAIN AHRoZXJhcGlzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk="); code != 235 {
				t.Fatalf("AUTH: %d %s", code, msg)
			}
			s.cmd("MAIL FROM:<" + testFrom + ">")
			s.cmd("RCPT TO:<a@practice.example>")
			if code, _ := s.cmd("DATA"); code != 354 {
				t.Fatalf("DATA: %d", code)
			}
			io.WriteString(s.conn, "From: "+testFrom+"\r\nSubject: s\r\n\r\n"+tt.data+"\r\n.\r\n")
			code, msg := s.read()
			if code != 554 || !strings.HasPrefix(msg, "5.6.0") {
				t.Fatalf("got %d %s, want 554 5.6.0", code, msg)
			}
			// The session is still usable, and nothing was queued.
			if code, _ := s.cmd("NOOP"); code != 250 {
				t.Fatalf("session unusable after refusal: %d", code)
			}
		})
	}
	if n := len(outboxFiles(t, r.dataDir)); n != 0 || len(r.Queue()) != 0 || len(r.archive.messages) != 0 {
		t.Fatalf("a refused message went somewhere: outbox %d, queue %d, archive %d", n, len(r.Queue()), len(r.archive.messages))
	}
}

func TestTooManyRecipients(t *testing.T) {
	r := startRelay(t, relayOpts{})
	c := r.login(t)
	if err := c.Mail(testFrom, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := c.Rcpt(fmt.Sprintf("r%d@practice.example", i), nil); err != nil {
			t.Fatalf("recipient %d: %v", i, err)
		}
	}
	if got := smtpCode(c.Rcpt("r100@practice.example", nil)); got != "452 4.5.3" {
		t.Fatalf("101st recipient: %s, want 452 4.5.3", got)
	}
}

// TestArchiveOrSpoolFailure: nothing is answered 250 without being durable in
// both, and the reply is temporary so the mail client retries.
func TestArchiveOrSpoolFailure(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
		// afterSpooled: the record fails only once the spool file is
		// committed, which happens while the record is being written.
		afterSpooled bool
	}{
		{"disk full", fmt.Errorf("write segment: %w", syscall.ENOSPC), "452 4.3.1", false},
		{"archive unwritable", errors.New("archive: permission denied"), "451 4.3.0", false},
		{"archive fails after the spool commit", errors.New("archive: fsync: input/output error"), "451 4.3.0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelay(t, relayOpts{})
			r.archive.failWith = tt.err
			queueDir := filepath.Join(r.dataDir, "spool", "queue")
			var sawSpooled atomic.Bool
			if tt.afterSpooled {
				r.archive.afterRead = func() {
					// Not waitFor: this runs on the relay's goroutine.
					for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !sawSpooled.Load(); time.Sleep(time.Millisecond) {
						files, _ := filepath.Glob(filepath.Join(queueDir, "*.msg"))
						for _, f := range files {
							if b, _ := os.ReadFile(f); strings.HasSuffix(string(b), awaitingMagic) {
								sawSpooled.Store(true)
							}
						}
					}
				}
			}
			c := r.login(t)
			err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x"))
			if got := smtpCode(err); got != tt.want {
				t.Fatalf("reply %s, want %s", got, tt.want)
			}
			if strings.Contains(err.Error(), "permission") || strings.Contains(err.Error(), "segment") || strings.Contains(err.Error(), "fsync") {
				t.Fatalf("internal error text reached the client: %v", err)
			}
			if len(r.Queue()) != 0 || len(outboxFiles(t, r.dataDir)) != 0 {
				t.Fatal("message queued or delivered although the archive failed")
			}
			if files, _ := filepath.Glob(filepath.Join(queueDir, "*.msg")); len(files) != 0 {
				t.Fatalf("spool files left behind: %v", files)
			}
			if tt.afterSpooled && !sawSpooled.Load() {
				t.Fatal("the spool file was never committed while the record was being written")
			}
			r.archive.afterRead = nil
			r.archive.failWith = nil
			if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
				t.Fatalf("after recovery: %v", err)
			}
		})
	}
}

// TestEncryptionFailsAfterArchiving: the archive record is written while the
// encrypted copies are made; when those fail, the record says the message
// was aborted, nothing is queued, and the client is told to retry.
func TestEncryptionFailsAfterArchiving(t *testing.T) {
	r := startRelay(t, relayOpts{})
	r.policy.mu.Lock()
	r.policy.encryptErr = errors.New("encrypt copy: key store unreadable")
	r.policy.mu.Unlock()
	c := r.login(t)
	err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x"))
	if code := smtpCode(err); !strings.HasPrefix(code, "4") || strings.Contains(err.Error(), "key store") {
		t.Fatalf("reply %v, want a 4xx without internal text", err)
	}
	if len(r.Queue()) != 0 || len(outboxFiles(t, r.dataDir)) != 0 {
		t.Fatal("a message without its encrypted copy was queued or delivered")
	}
	r.archive.mu.Lock()
	defer r.archive.mu.Unlock()
	if len(r.archive.messages) != 1 || len(r.archive.events) != 1 || r.archive.events[0].Kind != archive.Aborted ||
		r.archive.events[0].MessageID != r.archive.messages[0].ID {
		t.Fatalf("archive: %d messages, events %+v; want the message and its Aborted event", len(r.archive.messages), r.archive.events)
	}
}

func TestAuthThrottle(t *testing.T) {
	var mu sync.Mutex
	var delays []time.Duration
	r := startRelay(t, relayOpts{authDelay: func(_ context.Context, d time.Duration) {
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
	}})
	c := r.dial(t)
	for i := 0; i < 12; i++ {
		if got := smtpCode(c.Auth(sasl.NewPlainClient("", testUser, "wrong"))); got != "535 5.7.8" && got != "421 4.7.0" {
			t.Fatalf("attempt %d: %s", i, got)
		}
		if i%3 == 2 { // go-smtp ends sessions after a few errors; come back like an attacker would
			c = r.dial(t)
		}
	}
	mu.Lock()
	if len(delays) < 5 || delays[0] != time.Second || delays[len(delays)-1] <= delays[0] {
		t.Errorf("failed logins after the first five were delayed %v; want growing delays from 1s", delays)
	}
	mu.Unlock()
	// At the hourly ceiling even the right password is refused for a while.
	for i := 0; i < 100; i++ {
		r.throttle.fail(time.Now(), "user:"+testUser)
	}
	if got := smtpCode(r.dial(t).Auth(sasl.NewPlainClient("", testUser, testPassword))); got != "454 4.7.0" {
		t.Fatalf("login at the ceiling: %s, want 454 4.7.0", got)
	}
}

func TestTooManyErrorsClosesSession(t *testing.T) {
	r := startRelay(t, relayOpts{})
	s := rawDial(t, r.addrs.Submission.String())
	s.cmd("EHLO client.test")
	s.startTLS(r.pki)
	s.cmd("EHLO client.test")
	s.cmd("AUTH PLAIN AHRoZXJhcGlzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk=")
	var code int
	var msg string
	for i := 0; i < maxSessionErrors; i++ {
		code, msg = s.cmd("MAIL FROM:<someone@else.example>")
	}
	if code != 421 {
		t.Fatalf("after %d errors: %d %s, want 421", maxSessionErrors, code, msg)
	}
	if _, err := bufio.NewReader(s.conn).ReadByte(); err == nil {
		t.Fatal("connection still open after 421")
	}
}
