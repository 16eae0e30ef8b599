package relaytest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

// The account every relay test logs in as.
const (
	User     = "therapist"
	Password = "correct horse battery"
	From     = "therapist@practice.example"
	// AuthPlain logs in as User with Password.
	AuthPlain = "AUTH PLAIN AHRoZXJhcGlzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk="
)

var passwordHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(Password), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// PasswordHash is Password's bcrypt hash, at the lowest cost.
func PasswordHash() string { return passwordHash() }

// Message is a small message with the given header fields and body.
func Message(from, to, subject, body string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@test>\r\n\r\n" + body + "\r\n"
}

// Send sends msg in one transaction.
func Send(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	return w.Close()
}

// SMTPCode is the code and enhanced code of the reply err carries ("550
// 5.7.1"), "ok" for nil, or the error.
func SMTPCode(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	if err == nil {
		return "ok"
	}
	return "error: " + err.Error()
}

// LoginClient is SASL LOGIN as Outlook speaks it.
type LoginClient struct{ User, Pass string }

func (l LoginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }
func (l LoginClient) Next(challenge []byte) ([]byte, error) {
	switch string(challenge) {
	case "Username:":
		return []byte(l.User), nil
	case "Password:":
		return []byte(l.Pass), nil
	}
	return nil, fmt.Errorf("unexpected challenge %q", challenge)
}

// RawSession speaks SMTP by hand, for what a well-behaved client library
// will not send.
type RawSession struct {
	t    testing.TB
	Conn net.Conn
	Text *textproto.Conn
}

// RawDial connects to addr and reads the 220 greeting.
func RawDial(t testing.TB, addr string) *RawSession {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { conn.Close() })
	s := &RawSession{t: t, Conn: conn, Text: textproto.NewConn(conn)}
	s.Expect(220)
	return s
}

// Cmd sends line and reads its reply.
func (s *RawSession) Cmd(line string) (int, string) {
	s.t.Helper()
	if err := s.Text.PrintfLine("%s", line); err != nil {
		s.t.Fatalf("send %q: %v", line, err)
	}
	return s.Read()
}

// Read reads a reply.
func (s *RawSession) Read() (int, string) {
	s.t.Helper()
	code, msg, err := s.Text.ReadResponse(0)
	if err != nil && code == 0 {
		s.t.Fatalf("read reply: %v", err)
	}
	return code, msg
}

// Expect reads a reply and fails the test unless its code is code.
func (s *RawSession) Expect(code int) string {
	s.t.Helper()
	got, msg := s.Read()
	if got != code {
		s.t.Fatalf("reply %d %s, want %d", got, msg, code)
	}
	return msg
}

// StartTLS says STARTTLS and goes on inside TLS, trusting pool.
func (s *RawSession) StartTLS(pool *x509.CertPool) {
	s.t.Helper()
	if code, msg := s.Cmd("STARTTLS"); code != 220 {
		s.t.Fatalf("STARTTLS: %d %s", code, msg)
	}
	tc := tls.Client(s.Conn, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		s.t.Fatal(err)
	}
	s.Inside(tc)
}

// Inside goes on over c (a TLS connection over the session's socket).
func (s *RawSession) Inside(c net.Conn) {
	s.Conn = c
	s.Text = textproto.NewConn(c)
}

// ClosedByServer says whether the server closed c: a read ends, and not by
// timing out.
func ClosedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [512]byte
	for {
		_, err := c.Read(b[:])
		if err != nil {
			return !errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
}
