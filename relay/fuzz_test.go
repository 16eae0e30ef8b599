package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	nettextproto "net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
)

// FuzzData feeds arbitrary message bytes through the DATA checks and the
// header preparation: they must never panic, and whatever they let through
// has no bare CR or LF and no NUL.
func FuzzData(f *testing.F) {
	for _, seed := range []string{
		"From: therapist@practice.example\r\nSubject: hi\r\n\r\nbody\r\n",
		"From: therapist@practice.example\r\n\r\nx\n.\nMAIL FROM:<a@b.c>\r\n",
		"From: =?utf-8?q?Th=C3=A9rapist?= <therapist@practice.example>\r\nX-Sealpost-X: 1\r\n\r\n",
		"Subject: no from\r\n\r\n",
		"From: a\r\n \r\n\tfolded\r\n\r\n",
		"\r\n\r\n",
		"From: therapist@practice.example\r\nSender: other@x.example\r\n\r\n",
		"From: therapist@practice.example\r\na\rb\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	acct := &Account{Username: "therapist", normalized: map[string]bool{"therapist@practice.example": true}}
	f.Fuzz(func(t *testing.T, data []byte) {
		strict := &strictReader{r: bytes.NewReader(data)}
		br := bufio.NewReaderSize(strict, 4096)
		raw, err := readHeaderSection(br)
		if err != nil {
			return
		}
		hdr, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		hdr, err = prepareHeader(hdr, acct, "relay.test", "0123456789abc", time.Unix(0, 0))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := textproto.WriteHeader(&out, hdr); err != nil {
			t.Fatalf("writing an accepted header: %v", err)
		}
		if _, err := io.Copy(&out, br); err != nil {
			return
		}
		b := out.Bytes()
		if bytes.IndexByte(b, 0) >= 0 {
			t.Fatal("NUL passed")
		}
		if bytes.Count(b, []byte("\r")) != bytes.Count(b, []byte("\r\n")) || bytes.Count(b, []byte("\n")) != bytes.Count(b, []byte("\r\n")) {
			t.Fatalf("bare CR or LF passed: %q", b)
		}
		if strings.Contains(strings.ToLower(string(raw)), "x-sealpost-") && bytes.Contains(bytes.ToLower(b), []byte("x-sealpost-")) {
			t.Fatal("a private header passed")
		}
	})
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
func (l *pipeListener) Close() error   { close(l.done); return nil }
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
	r := startRelay(f, relayOpts{})
	srv := r.servers[0]
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	go srv.Serve(l)
	f.Fuzz(func(t *testing.T, input []byte) {
		client, server := net.Pipe()
		// As the submission port's listener hands it over: sealpost's own
		// dialogue before TLS in front of go-smtp.
		l.conns <- newFrontConn(&guardConn{Conn: server, metrics: r.metrics, log: r.log}, r.front, nil)
		client.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			client.Write(input)
			client.Write([]byte("\r\nQUIT\r\n"))
		}()
		io.Copy(io.Discard, client)
		client.Close()
		if n := len(r.Queue()); n != 0 {
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
	r := startRelay(f, relayOpts{authDelay: func(context.Context, time.Duration) {}})
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	go r.servers[0].Serve(l)
	// Resumed sessions: a full handshake per run, its certificate signature
	// under the fuzzer's coverage instrumentation, took a second or more.
	clientTLS := &tls.Config{RootCAs: r.pki.pool, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	f.Fuzz(func(t *testing.T, input []byte) {
		r.throttle.mu.Lock()
		clear(r.throttle.failures)
		r.throttle.mu.Unlock()
		client, server := net.Pipe()
		defer client.Close()
		l.conns <- newFrontConn(&guardConn{Conn: server, metrics: r.metrics, log: r.log}, r.front, nil)
		client.SetDeadline(time.Now().Add(5 * time.Second))
		tp := nettextproto.NewConn(client)
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
