package submission

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

// TestBadCommands is the bad-input catalogue at the command level: each row
// is what a broken or hostile client sends and the reply it must get; the
// session must survive it.
func TestBadCommands(t *testing.T) {
	r := startServer(t, serverOpts{})
	// Like the real rules: only the practice's own domain is internal.
	r.relay.decide = func(rcpt string) (record.Decision, error) {
		if strings.HasSuffix(rcpt, "@practice.example") {
			return record.Decision{Protection: record.Internal}, nil
		}
		return record.Decision{Protection: record.Refused, Reason: "<" + rcpt + ">: no consent on file"}, nil
	}
	long := strings.Repeat("a", 250)
	tests := []struct {
		name  string
		lines []string // sent in order; the reply to the last one is checked
		code  int
		text  string
	}{
		{"open relay: percent hack", []string{"MAIL FROM:<" + testFrom + ">", "RCPT TO:<u%ext.example@practice.example>"}, 550, "5.1.3"},
		{"open relay: quoted local part", []string{"MAIL FROM:<" + testFrom + ">", `RCPT TO:<"u@ext.example"@practice.example>`}, 550, "5.1.3"},
		{"open relay: two at signs", []string{"MAIL FROM:<" + testFrom + ">", "RCPT TO:<u@ext.example@practice.example>"}, 550, "5.1.3"},
		// RFC 5321 says to ignore source routes: the recipient is u@ext.example,
		// decided like any other, so the route opens no way out.
		{"open relay: source route", []string{"MAIL FROM:<" + testFrom + ">", "RCPT TO:<@practice.example:u@ext.example>"}, 550, "<u@ext.example>: no consent"},
		{"open relay: bang path", []string{"MAIL FROM:<" + testFrom + ">", "RCPT TO:<ext.example!u@practice.example>"}, 550, "5.1.3"},
		{"open relay: address literal", []string{"MAIL FROM:<" + testFrom + ">", "RCPT TO:<u@[127.0.0.1]>"}, 550, ""},
		{"open relay: trailing dot", []string{"MAIL FROM:<" + testFrom + ">", "RCPT TO:<u@practice.example.>"}, 550, "5.1.3"},
		{"path over 256 octets", []string{"MAIL FROM:<" + testFrom + ">", "RCPT TO:<" + long + "@practice.example>"}, 550, "5.1.3"},
		{"NUL in an address", []string{"MAIL FROM:<" + testFrom + ">", "RCPT TO:<a\x00b@practice.example>"}, 550, ""},
		{"bare CR in an address", []string{"MAIL FROM:<" + testFrom + ">", "RCPT TO:<a\rb@practice.example>"}, 550, ""},
		{"sender path over 256 octets", []string{"MAIL FROM:<" + long + "@practice.example>"}, 553, "5.1.7"},
		{"MAIL line over 512 octets", []string{"MAIL FROM:<" + testFrom + "> AUTH=x@" + strings.Repeat("label.", 80) + "example"}, 500, "5.5.2"},
		{"EHLO over 512 octets", []string{"EHLO " + strings.Repeat("h", 520) + ".example", "MAIL FROM:<" + testFrom + ">"}, 500, "5.5.2"},
		{"RCPT before MAIL", []string{"RCPT TO:<a@practice.example>"}, 502, ""},
		{"DATA before RCPT", []string{"MAIL FROM:<" + testFrom + ">", "DATA"}, 502, ""},
		{"unknown command", []string{"XYZZ"}, 500, ""},
		{"second AUTH", []string{authPlain}, 503, ""},
		{"AUTH with malformed base64", []string{"RSET"}, 250, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := loggedIn(t, r)
			var code int
			var msg string
			for _, l := range tt.lines {
				code, msg = s.Cmd(l)
			}
			if code != tt.code || !strings.Contains(msg, tt.text) {
				t.Fatalf("reply %d %s, want %d %s", code, msg, tt.code, tt.text)
			}
			if code, _ := s.Cmd("NOOP"); code != 250 {
				t.Fatalf("session did not survive: NOOP got %d", code)
			}
		})
	}
}

// TestRelayProbesWithoutAuth: without a login nothing gets past MAIL,
// whatever the recipient looks like.
func TestRelayProbesWithoutAuth(t *testing.T) {
	r := startServer(t, serverOpts{})
	for _, rcpt := range []string{"u%ext.example@practice.example", `"u@ext.example"@practice.example`, "u@ext.example@practice.example",
		"@practice.example:u@ext.example", "ext.example!u@practice.example", "u@[127.0.0.1]", "u@ext.example."} {
		for _, tlsFirst := range []bool{false, true} {
			s := rawDial(t, r.addrs.Submission.String())
			s.Cmd("EHLO probe.test")
			if tlsFirst {
				s.StartTLS(r.pki.Pool)
				s.Cmd("EHLO probe.test")
			}
			if code, msg := s.Cmd("MAIL FROM:<probe@ext.example>"); code != 530 {
				t.Errorf("MAIL without AUTH (tls %v): %d %s", tlsFirst, code, msg)
			}
			if code, msg := s.Cmd("RCPT TO:<" + rcpt + ">"); code/100 != 5 {
				t.Errorf("RCPT %s without AUTH (tls %v): %d %s", rcpt, tlsFirst, code, msg)
			}
			if code, msg := s.Cmd("DATA"); code/100 != 5 {
				t.Errorf("DATA without AUTH: %d %s", code, msg)
			}
		}
	}
}

// TestBadAuthData: malformed SASL data is refused without crashing the
// session or counting as a success.
func TestBadAuthData(t *testing.T) {
	r := startServer(t, serverOpts{})
	tests := []struct{ name, line string }{
		{"not base64", "AUTH PLAIN !!!"},
		{"NUL-free garbage", "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("garbage"))},
		{"NUL in the username", "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00ther\x00apist\x00x"))},
		{"unknown mechanism", "AUTH CRAM-MD5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := rawDial(t, r.addrs.Submission.String())
			s.Cmd("EHLO client.test")
			s.StartTLS(r.pki.Pool)
			s.Cmd("EHLO client.test")
			code, msg := s.Cmd(tt.line)
			if code/100 != 4 && code/100 != 5 {
				t.Fatalf("reply %d %s; want a refusal", code, msg)
			}
			if code, _ := s.Cmd("MAIL FROM:<" + testFrom + ">"); code != 530 {
				t.Fatalf("after bad AUTH data, MAIL got %d; want 530 (not logged in)", code)
			}
		})
	}
}

func TestTooManyRecipients(t *testing.T) {
	r := startServer(t, serverOpts{})
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

func TestTooManyErrorsClosesSession(t *testing.T) {
	r := startServer(t, serverOpts{})
	s := rawDial(t, r.addrs.Submission.String())
	s.Cmd("EHLO client.test")
	s.StartTLS(r.pki.Pool)
	s.Cmd("EHLO client.test")
	s.Cmd("AUTH PLAIN AHRoZXJhcGlzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk=")
	var code int
	var msg string
	for i := 0; i < maxSessionErrors; i++ {
		code, msg = s.Cmd("MAIL FROM:<someone@else.example>")
	}
	if code != 421 {
		t.Fatalf("after %d errors: %d %s, want 421", maxSessionErrors, code, msg)
	}
	if _, err := bufio.NewReader(s.Conn).ReadByte(); err == nil {
		t.Fatal("connection still open after 421")
	}
}

// pipeListener hands in-memory connections to the SMTP server.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { close(l.done); return nil }

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{} }

// FuzzSession throws arbitrary client input at a live session (before
// TLS and login, where anyone can reach it): the server must answer or hang
// up, never panic, and never accept a message.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO x\r\nAUTH PLAIN AGEAYg==\r\n",
		"HELO x\r\nBDAT 5 LAST\r\nhello",
		"EHLO x\r\nSTARTTLS\r\n\x16\x03\x01",
		"EHLO " + strings.Repeat("x", 3000) + "\r\n",
		"\x00\xff\r\n\n\r.\r\n",
		"EHLO x\r\nAUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\n",
	} {
		f.Add([]byte(seed))
	}
	r := startServer(f, serverOpts{})
	srv := r.servers[0]
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	go srv.Serve(l)
	f.Fuzz(func(t *testing.T, input []byte) {
		client, server := net.Pipe()
		// As the submission port's listener hands it over: sealpost's own
		// dialogue before TLS in front of go-smtp.
		l.conns <- newWire(&socket{Conn: server, metrics: r.metrics, log: r.log}, r.wire, nil)
		client.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			client.Write(input)
			client.Write([]byte("\r\nQUIT\r\n"))
		}()
		io.Copy(io.Discard, client)
		client.Close()
		if n := len(r.relay.accepted()); n != 0 {
			t.Fatalf("%d messages accepted without a login", n)
		}
	})
}

// FuzzLoggedInSession throws arbitrary input at a session inside TLS and
// logged in, where a mail client talks: commands, DATA (read by frontConn's
// bodyReader) and BDAT (read by go-smtp). The server must answer or hang
// up, never panic.
func FuzzLoggedInSession(f *testing.F) {
	msg := "From: " + testFrom + "\r\nSubject: s\r\n\r\n"
	for _, seed := range []string{
		"MAIL FROM:<" + testFrom + ">\r\nRCPT TO:<a@practice.example>\r\nDATA\r\n" + msg + "hi\r\n..dot\r\n.\r\n",
		"MAIL FROM:<" + testFrom + ">\r\nRCPT TO:<a@practice.example>\r\nDATA\r\n" + msg + "x\r\n.\rMAIL FROM:<x@y.z>\r\n.\r\n",
		"MAIL FROM:<" + testFrom + ">\r\nRCPT TO:<a@practice.example>\r\nBDAT 40 LAST\r\n" + msg + "DATA\r\n",
		"MAIL FROM:<" + testFrom + ">\r\nRCPT TO:<a@practice.example>\r\nDATA\r\n.\r\nDATA\r\n",
		"RSET\r\nDATA\r\n" + msg + "\n.\n",
	} {
		f.Add([]byte(seed))
	}
	// Failed logins in the input must not slow the server down (the
	// throttle's delay) nor lock out the login every run starts with.
	r := startServer(f, serverOpts{authDelay: func(context.Context, time.Duration) {}})
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	go r.servers[0].Serve(l)
	// Resumed sessions: a full handshake per run, its certificate signature
	// under the fuzzer's coverage instrumentation, took a second or more.
	clientTLS := &tls.Config{RootCAs: r.pki.Pool, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	f.Fuzz(func(t *testing.T, input []byte) {
		r.throttle.Reset()
		client, server := net.Pipe()
		defer client.Close()
		l.conns <- newWire(&socket{Conn: server, metrics: r.metrics, log: r.log}, r.wire, nil)
		client.SetDeadline(time.Now().Add(5 * time.Second))
		tp := textproto.NewConn(client)
		if _, _, err := tp.ReadResponse(220); err != nil {
			t.Fatal(err)
		}
		tp.PrintfLine("EHLO fuzz.test")
		if _, _, err := tp.ReadResponse(250); err != nil {
			t.Fatal(err)
		}
		tp.PrintfLine("STARTTLS")
		if _, _, err := tp.ReadResponse(220); err != nil {
			t.Fatal(err)
		}
		tc := tls.Client(client, clientTLS)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		go func() {
			io.WriteString(tc, "EHLO fuzz.test\r\n"+authPlain+"\r\n")
			tc.Write(input)
			io.WriteString(tc, "\r\n.\r\nQUIT\r\n")
			// Hang up rather than wait: input that leaves the server
			// waiting (a BDAT chunk never sent) must not cost the deadline.
			client.Close()
		}()
		io.Copy(io.Discard, tc)
	})
}
