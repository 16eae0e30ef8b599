package relay

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sealpost/sealpost/record"
)

const authPlain = "AUTH PLAIN AHRoZXJhcGlzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk="

// loggedIn returns a raw session inside TLS, logged in.
func loggedIn(t *testing.T, r *testRelay) *rawSession {
	t.Helper()
	s := rawDial(t, r.addrs.Submission.String())
	s.cmd("EHLO client.test")
	s.startTLS(r.pki)
	s.cmd("EHLO client.test")
	if code, msg := s.cmd(authPlain); code != 235 {
		t.Fatalf("AUTH: %d %s", code, msg)
	}
	return s
}

// TestBadCommands is the bad-input catalogue at the command level: each row
// is what a broken or hostile client sends and the reply it must get; the
// session must survive it.
func TestBadCommands(t *testing.T) {
	r := startRelay(t, relayOpts{})
	// Like the real rules: only the practice's own domain is internal.
	r.policy.decide = func(rcpt string) (record.Decision, error) {
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
				code, msg = s.cmd(l)
			}
			if code != tt.code || !strings.Contains(msg, tt.text) {
				t.Fatalf("reply %d %s, want %d %s", code, msg, tt.code, tt.text)
			}
			if code, _ := s.cmd("NOOP"); code != 250 {
				t.Fatalf("session did not survive: NOOP got %d", code)
			}
		})
	}
}

// TestRelayProbesWithoutAuth: without a login nothing gets past MAIL,
// whatever the recipient looks like.
func TestRelayProbesWithoutAuth(t *testing.T) {
	r := startRelay(t, relayOpts{})
	for _, rcpt := range []string{"u%ext.example@practice.example", `"u@ext.example"@practice.example`, "u@ext.example@practice.example",
		"@practice.example:u@ext.example", "ext.example!u@practice.example", "u@[127.0.0.1]", "u@ext.example."} {
		for _, tlsFirst := range []bool{false, true} {
			s := rawDial(t, r.addrs.Submission.String())
			s.cmd("EHLO probe.test")
			if tlsFirst {
				s.startTLS(r.pki)
				s.cmd("EHLO probe.test")
			}
			if code, msg := s.cmd("MAIL FROM:<probe@ext.example>"); code != 530 {
				t.Errorf("MAIL without AUTH (tls %v): %d %s", tlsFirst, code, msg)
			}
			if code, msg := s.cmd("RCPT TO:<" + rcpt + ">"); code/100 != 5 {
				t.Errorf("RCPT %s without AUTH (tls %v): %d %s", rcpt, tlsFirst, code, msg)
			}
			if code, msg := s.cmd("DATA"); code/100 != 5 {
				t.Errorf("DATA without AUTH: %d %s", code, msg)
			}
		}
	}
}

// TestBadAuthData: malformed SASL data is refused without crashing the
// session or counting as a success.
func TestBadAuthData(t *testing.T) {
	r := startRelay(t, relayOpts{})
	tests := []struct{ name, line string }{
		{"not base64", "AUTH PLAIN !!!"},
		{"NUL-free garbage", "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("garbage"))},
		{"NUL in the username", "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00ther\x00apist\x00x"))},
		{"unknown mechanism", "AUTH CRAM-MD5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := rawDial(t, r.addrs.Submission.String())
			s.cmd("EHLO client.test")
			s.startTLS(r.pki)
			s.cmd("EHLO client.test")
			code, msg := s.cmd(tt.line)
			if code/100 != 4 && code/100 != 5 {
				t.Fatalf("reply %d %s; want a refusal", code, msg)
			}
			if code, _ := s.cmd("MAIL FROM:<" + testFrom + ">"); code != 530 {
				t.Fatalf("after bad AUTH data, MAIL got %d; want 530 (not logged in)", code)
			}
		})
	}
}

// TestHeaderLimits: a header section over 100 KiB or 1000 fields is
// refused; headers only sealpost may set are stripped from what is accepted.
func TestHeaderLimits(t *testing.T) {
	r := startRelay(t, relayOpts{maxBytes: 4 << 20})
	c := r.login(t)
	many := strings.Repeat("X-Filler: x\r\n", 1001)
	big := "X-Big: " + strings.Repeat(strings.Repeat("y", 900)+"\r\n ", 120) + "end\r\n"
	for name, extra := range map[string]string{"1001 fields": many, "over 100 KiB": big} {
		err := send(c, testFrom, []string{"a@practice.example"}, "From: "+testFrom+"\r\n"+extra+"Subject: s\r\n\r\nbody\r\n")
		if got := smtpCode(err); got != "552 5.3.4" {
			t.Errorf("%s: %s, want 552 5.3.4", name, got)
		}
	}
	msg := "From: " + testFrom + "\r\nX-Sealpost-Decision: consented\r\nAuto-Submitted: auto-replied\r\nX-Kept: yes\r\nSubject: s\r\n\r\nbody\r\n"
	if err := send(c, testFrom, []string{"a@practice.example"}, msg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message in the outbox", func() bool { return len(outboxFiles(t, r.dataDir)) == 1 })
	got := outboxFiles(t, r.dataDir)[0]
	if strings.Contains(got, "X-Sealpost-Decision") || strings.Contains(got, "Auto-Submitted") || !strings.Contains(got, "X-Kept: yes") {
		t.Fatalf("private headers not stripped, or others lost:\n%s", got)
	}
}

// TestBDATSmuggling: CHUNKING feeds the same checks as DATA.
func TestBDATSmuggling(t *testing.T) {
	r := startRelay(t, relayOpts{})
	s := loggedIn(t, r)
	s.cmd("MAIL FROM:<" + testFrom + ">")
	s.cmd("RCPT TO:<a@practice.example>")
	chunk := "From: " + testFrom + "\r\nSubject: s\r\n\r\nx\n.\nMAIL FROM:<" + testFrom + ">\r\n"
	fmt.Fprintf(s.conn, "BDAT %d LAST\r\n%s", len(chunk), chunk)
	if code, msg := s.read(); code != 554 || !strings.HasPrefix(msg, "5.6.0") {
		t.Fatalf("BDAT with a bare LF: %d %s, want 554 5.6.0", code, msg)
	}
	if code, _ := s.cmd("NOOP"); code != 250 {
		t.Fatal("session did not survive")
	}
	if len(r.Queue()) != 0 {
		t.Fatal("a message was queued")
	}
}

// TestPlaintextAfterSTARTTLS: commands pipelined in clear behind STARTTLS
// must never be executed inside the TLS session (CVE-2011-0411).
func TestPlaintextAfterSTARTTLS(t *testing.T) {
	r := startRelay(t, relayOpts{})
	s := rawDial(t, r.addrs.Submission.String())
	s.cmd("EHLO client.test")
	io.WriteString(s.conn, "STARTTLS\r\nRSET\r\n")
	if code, _ := s.read(); code != 220 {
		t.Fatalf("STARTTLS: %d", code)
	}
	tc := tls.Client(s.conn, &tls.Config{RootCAs: r.pki.pool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		return // the injected bytes broke the handshake: nothing was executed
	}
	s.conn = tc
	s.tp = newTextConn(tc)
	code, msg := s.cmd("EHLO client.test")
	if code != 250 || !strings.Contains(msg, "AUTH") {
		t.Fatalf("first reply inside TLS is %d %q; an injected command's reply would come first", code, msg)
	}
}

// TestLongEHLO: an EHLO whose domain makes the line longer than 512
// octets gets no session; a proper EHLO then works.
func TestLongEHLO(t *testing.T) {
	r := startRelay(t, relayOpts{})
	s := rawDial(t, r.addrs.Submission.String())
	if code, msg := s.cmd("EHLO " + strings.Repeat("h", 600) + ".example"); code != 500 || !strings.Contains(msg, "5.5.2") {
		t.Fatalf("long EHLO: %d %s", code, msg)
	}
	if code, msg := s.cmd("EHLO client.test"); code != 250 {
		t.Fatalf("EHLO after it: %d %s", code, msg)
	}
}

// TestEarlyTalker: a client that sends before the 220 greeting is answered
// 554 5.5.1 and cut off; one that waits is served as always, and so is an
// early talker when the check is off.
func TestEarlyTalker(t *testing.T) {
	tests := []struct {
		name      string
		wait      time.Duration
		talkFirst bool
		want      string // the first line the client reads
	}{
		// A long wait costs the early talker nothing: its bytes end the wait.
		{"talks first", 10 * time.Second, true, "554 5.5.1 "},
		{"waits for the greeting", 50 * time.Millisecond, false, "220 "},
		{"talks first, check off", 0, true, "220 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			r := startRelay(t, relayOpts{greetingWait: tt.wait, metrics: m})
			conn, err := net.DialTimeout("tcp", r.addrs.Submission.String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			if tt.talkFirst {
				if _, err := io.WriteString(conn, "EHLO bot.example\r\nMAIL FROM:<"+testFrom+">\r\n"); err != nil {
					t.Fatal(err)
				}
			}
			tp := textproto.NewReader(bufio.NewReader(conn))
			line, err := tp.ReadLine()
			if err != nil || !strings.HasPrefix(line, tt.want) {
				t.Fatalf("first line %q (%v), want %q...", line, err, tt.want)
			}
			refused := testutil.ToFloat64(m.refused.WithLabelValues("connect", "early_talker"))
			if tt.want == "220 " {
				if refused != 0 {
					t.Errorf("early_talker refusals %v, want 0", refused)
				}
				if !tt.talkFirst {
					io.WriteString(conn, "EHLO client.test\r\n")
				}
				if code, _, err := textproto.NewReader(tp.R).ReadResponse(250); err != nil {
					t.Fatalf("EHLO: %d %v", code, err)
				}
				return
			}
			if _, err := tp.ReadLine(); err != io.EOF {
				t.Errorf("after the 554: %v, want the connection closed", err)
			}
			if refused != 1 {
				t.Errorf("early_talker refusals %v, want 1", refused)
			}
		})
	}
}
