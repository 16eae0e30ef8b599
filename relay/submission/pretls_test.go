package submission

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sealpost/sealpost/relay/internal/relaytest"
)

// TestBeforeTLS: on the submission port sealpost itself answers until
// STARTTLS; nothing but the greeting commands works before it.
func TestBeforeTLS(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	r := startServer(t, serverOpts{metrics: m})
	s := rawDial(t, r.addrs.Submission.String())
	for _, tt := range []struct {
		line string
		code int
		text string
	}{
		{"HELO client.test", 250, ""},
		{"EHLO", 501, "5.5.2"},
		{"NOOP", 250, "2.0.0"},
		{"RSET", 250, "2.0.0"},
		{"MAIL FROM:<" + testFrom + ">", 530, "5.7.0 Authentication required"},
		{"RCPT TO:<a@practice.example>", 530, "5.7.0 Authentication required"},
		{"DATA", 530, "5.7.0 Must issue a STARTTLS command first"},
		{"AUTH PLAIN", 538, "5.7.11 Encryption required"},
		{"BDAT 3 LAST", 530, "5.7.0"},
		{"STARTTLS now", 530, "5.7.0"},
		{"EHLO client.test", 250, "STARTTLS"},
	} {
		if code, msg := s.Cmd(tt.line); code != tt.code || !strings.Contains(msg, tt.text) {
			t.Errorf("%s: %d %s; want %d %s", tt.line, code, msg, tt.code, tt.text)
		}
	}
	for l, want := range map[[2]string]float64{{"command", "tls_required"}: 3, {"auth", "tls_required"}: 1, {"mail", "auth_required"}: 1, {"rcpt", "auth_required"}: 1} {
		if n := promtest.ToFloat64(m.refused.WithLabelValues(l[0], l[1])); n != want {
			t.Errorf("refusals{stage=%q,reason=%q} = %v, want %v", l[0], l[1], n, want)
		}
	}
	if code, _ := s.Cmd("QUIT"); code != 221 {
		t.Errorf("QUIT: %d", code)
	}
	if !relaytest.ClosedByServer(s.Conn) {
		t.Error("the connection is open after QUIT")
	}

	// A client that keeps sending what is refused is cut off.
	s = rawDial(t, r.addrs.Submission.String())
	for i := 0; i < maxSessionErrors-1; i++ {
		s.Cmd("MAIL FROM:<" + testFrom + ">")
	}
	if code, msg := s.Cmd("MAIL FROM:<" + testFrom + ">"); code != 421 {
		t.Errorf("refusal %d: %d %s, want 421", maxSessionErrors, code, msg)
	}
	if !relaytest.ClosedByServer(s.Conn) {
		t.Error("the connection is open after too many errors")
	}
	// And so is one whose line never ends.
	s = rawDial(t, r.addrs.Submission.String())
	if code, msg := s.Cmd(strings.Repeat("x", 2*maxPreTLSLine)); code != 500 {
		t.Errorf("an endless line: %d %s", code, msg)
	}
	if !relaytest.ClosedByServer(s.Conn) {
		t.Error("the connection is open after an endless line")
	}
	// And so is one that idles before STARTTLS with harmless commands
	// (each would have renewed the timeout), holding a connection slot.
	s = rawDial(t, r.addrs.Submission.String())
	for i := 0; i < maxPreTLSCommands; i++ {
		if code, msg := s.Cmd("NOOP"); code != 250 {
			t.Fatalf("NOOP %d: %d %s", i+1, code, msg)
		}
	}
	if code, msg := s.Cmd("NOOP"); code != 421 || !strings.Contains(msg, "before STARTTLS") {
		t.Errorf("NOOP %d: %d %s, want 421", maxPreTLSCommands+1, code, msg)
	}
	if !relaytest.ClosedByServer(s.Conn) {
		t.Error("the connection is open after too many commands before STARTTLS")
	}
}

func TestNoAuthBeforeTLS(t *testing.T) {
	r := startServer(t, serverOpts{})
	s := rawDial(t, r.addrs.Submission.String())
	code, ehlo := s.Cmd("EHLO client.test")
	if code != 250 || strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO before TLS: %d %q; want STARTTLS and no AUTH", code, ehlo)
	}
	if code, msg := s.Cmd("AUTH PLAIN AHRoZXJhcGlzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk="); code != 538 || !strings.HasPrefix(msg, "5.7.11 Encryption required") {
		t.Fatalf("AUTH before TLS: %d %s", code, msg)
	}
	if code, msg := s.Cmd("MAIL FROM:<" + testFrom + ">"); code != 530 {
		t.Fatalf("MAIL without AUTH: %d %s", code, msg)
	}
	s.StartTLS(r.pki.Pool)
	code, ehlo = s.Cmd("EHLO client.test")
	if code != 250 || !strings.Contains(ehlo, "AUTH PLAIN LOGIN") || !strings.Contains(ehlo, "SIZE 1048576") {
		t.Fatalf("EHLO after TLS: %d %q; want AUTH PLAIN LOGIN and SIZE", code, ehlo)
	}
	if code, msg := s.Cmd("AUTH PLAIN !!notbase64"); code/100 != 4 && code/100 != 5 {
		t.Fatalf("malformed base64: %d %s", code, msg)
	}
	// The session survives and a correct login still works.
	if code, msg := s.Cmd("AUTH PLAIN AHRoZXJhcGlzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk="); code != 235 {
		t.Fatalf("AUTH after TLS: %d %s", code, msg)
	}
}

// TestPlaintextAfterSTARTTLS: commands pipelined in clear behind STARTTLS
// must never be executed inside the TLS session (CVE-2011-0411).
func TestPlaintextAfterSTARTTLS(t *testing.T) {
	r := startServer(t, serverOpts{})
	s := rawDial(t, r.addrs.Submission.String())
	s.Cmd("EHLO client.test")
	io.WriteString(s.Conn, "STARTTLS\r\nRSET\r\n")
	if code, _ := s.Read(); code != 220 {
		t.Fatalf("STARTTLS: %d", code)
	}
	tc := tls.Client(s.Conn, &tls.Config{RootCAs: r.pki.Pool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		return // the injected bytes broke the handshake: nothing was executed
	}
	s.Inside(tc)
	code, msg := s.Cmd("EHLO client.test")
	if code != 250 || !strings.Contains(msg, "AUTH") {
		t.Fatalf("first reply inside TLS is %d %q; an injected command's reply would come first", code, msg)
	}
}

// TestLongEHLO: an EHLO whose domain makes the line longer than 512
// octets gets no session; a proper EHLO then works.
func TestLongEHLO(t *testing.T) {
	r := startServer(t, serverOpts{})
	s := rawDial(t, r.addrs.Submission.String())
	if code, msg := s.Cmd("EHLO " + strings.Repeat("h", 600) + ".example"); code != 500 || !strings.Contains(msg, "5.5.2") {
		t.Fatalf("long EHLO: %d %s", code, msg)
	}
	if code, msg := s.Cmd("EHLO client.test"); code != 250 {
		t.Fatalf("EHLO after it: %d %s", code, msg)
	}
}
