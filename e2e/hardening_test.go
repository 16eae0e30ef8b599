package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/internal/testutil"
)

// TestHardeningAddresses: swaks submits addresses with look-alike and
// invisible characters, which are refused with a reply that names the
// character and says to type the address plainly; other identity fields
// (Resent-From, Resent-Sender) are bound to the account; and what the
// provider's sink receives is the normalised address that was decided on.
func TestHardeningAddresses(t *testing.T) {
	testutil.RequireTools(t, "swaks")
	sink := StartSink(t)
	r := StartRelay(t, RelayOptions{Sink: sink, Sections: `[policy]
internal_domains = ["practice.example", "bücher.example"]
notice = "Notice of Confidentiality: e2e."
`})
	as := func(from string, extra ...string) []string {
		return append([]string{"--server", r.Submission, "--tls", "--tls-ca-path", r.CA, "--auth", "PLAIN",
			"--auth-user", User, "--auth-password", Password, "--from", from}, extra...)
	}
	tests := []struct {
		name   string
		args   []string
		ok     bool
		expect string
	}{
		{"full-width letter in the recipient's domain", r.SwaksArgs("--to", "colleague@\uff50ractice.example"), false,
			`550 5.1.3 <colleague@[U+FF50]ractice.example> holds U+FF50, a look-alike of "p"; mail systems would change or drop it, so the mail could reach someone else or no one: type the address plainly and send again`},
		{"zero-width space in the recipient's local part", r.SwaksArgs("--to", "col\u200bleague@practice.example"), false,
			"550 5.1.3 <col[U+200B]league@practice.example> holds U+200B, an invisible character;"},
		{"zero-width joiner in the recipient's domain", r.SwaksArgs("--to", "colleague@prac\u200dtice.example"), false,
			"550 5.1.3 <colleague@prac[U+200D]tice.example> holds U+200D, an invisible character;"},
		{"soft hyphen in MAIL FROM", as("thera\u00adpist@practice.example", "--to", "colleague@practice.example"), false,
			"553 5.1.7 <thera[U+00AD]pist@practice.example> holds U+00AD, an invisible character;"},
		{"full-width letter in the From: header", r.SwaksArgs("--to", "colleague@practice.example", "--header", "From: therapist@\uff50ractice.example"), false,
			"550 5.1.7 <therapist@[U+FF50]ractice.example> in the From: header holds U+FF50"},
		{"Resent-From of another address", r.SwaksArgs("--to", "colleague@practice.example", "--header", "Resent-From: boss@practice.example"), false,
			"550 5.7.1 <boss@practice.example> in the Resent-From: header is not an address of account therapist"},
		{"Resent-Sender of another address in an earlier block", r.SwaksArgs("--to", "colleague@practice.example", "--add-header",
			"Resent-From: "+From+"\nResent-Date: Mon, 2 Nov 2026 10:00:00 +0000\nResent-From: boss@practice.example\nResent-Sender: boss@practice.example"), false,
			"550 5.7.1 <boss@practice.example> in the Resent-From: header is not an address of account therapist"},
		{"resent by the account itself", r.SwaksArgs("--to", "colleague@practice.example", "--header", "Subject: resent", "--add-header",
			"Resent-From: Therapist <"+From+">\nResent-To: colleague@practice.example"), true, "250 2.0.0 OK: queued as"},
		{"upper case and an IDN, delivered as decided", as("Therapist@PRACTICE.example", "--to", "Colleague@Practice.EXAMPLE,anna@B\u00fccher.example",
			"--header", "Subject: normalised"), true, "250 2.0.0 OK: queued as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok := Swaks(t, tt.args...)
			if ok != tt.ok || !strings.Contains(out, tt.expect) {
				t.Fatalf("swaks exit ok=%v (want %v), transcript lacks %q:\n%s", ok, tt.ok, tt.expect, out)
			}
		})
	}
	testutil.WaitWithin(t, 30*time.Second, "two messages at the sink", func() bool { return len(sink.Messages(t)) == 2 })
	for _, m := range sink.Messages(t) {
		switch {
		case strings.Contains(m.Data, "Subject: normalised"):
			if m.From != From || strings.Join(m.To, ",") != "colleague@practice.example,anna@xn--bcher-kva.example" {
				t.Errorf("the provider got MAIL FROM:<%s> RCPT TO:%v; want <%s> and the normalised recipients", m.From, m.To, From)
			}
		case strings.Contains(m.Data, "Subject: resent"):
		default:
			t.Errorf("a refused message reached the provider:\n%s", m.Data)
		}
	}
}

// TestHardeningDataDeadline: a logged-in client that sends its message a
// byte every half second (each read well within smtp.timeout) is cut off at
// smtp.timeout + max_message_bytes at 64 KiB/s with 421 4.4.2, and nothing
// is delivered; a client at a normal pace on the same relay is not.
func TestHardeningDataDeadline(t *testing.T) {
	testutil.RequireTools(t, "swaks")
	const timeout, maxBytes = 2 * time.Second, 4096
	limit := timeout + time.Duration(float64(maxBytes)/(64<<10)*float64(time.Second))
	r := StartRelay(t, RelayOptions{SMTP: `timeout = "2s"`, Setup: func(r *Relay) {
		b, err := os.ReadFile(r.Config)
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.Replace(string(b), "max_message_bytes = 10485760", fmt.Sprintf("max_message_bytes = %d", maxBytes), 1)
		if err := os.WriteFile(r.Config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}})
	if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--header", "Subject: normal pace")...); !ok {
		t.Fatalf("a normal submission failed:\n%s", out)
	}
	testutil.WaitWithin(t, 10*time.Second, "the normal message in the outbox", func() bool { return len(r.Outbox(t)) == 1 })

	c := dialLoggedIn(t, r)
	c.cmd(t, "MAIL FROM:<"+From+">", 250)
	c.cmd(t, "RCPT TO:<colleague@practice.example>", 250)
	c.cmd(t, "DATA", 354)
	began := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		msg := "From: " + From + "\r\nTo: colleague@practice.example\r\nSubject: slow\r\n\r\n" + strings.Repeat("slow line\r\n", 100)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(msg); i++ {
			if _, err := c.conn.Write([]byte{msg[i]}); err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	code, text, err := c.tp.ReadResponse(0)
	elapsed := time.Since(began)
	if err != nil || code != 421 || !strings.HasPrefix(text, "4.4.2 ") {
		t.Fatalf("the slow client read %d %q (%v) after %v; want 421 4.4.2", code, text, err, elapsed)
	}
	if elapsed < limit || elapsed > limit+5*time.Second {
		t.Errorf("cut off after %v; the limit is %v", elapsed, limit)
	}
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.tp.R.ReadByte(); err == nil {
		t.Error("the connection stayed open after 421")
	}
	if n := len(r.Outbox(t)); n != 1 {
		t.Errorf("%d messages in the outbox; the slow one must not be there", n)
	}
	if !queueEmpty(t, r) {
		t.Error("the slow message is queued")
	}
}

// smtpConn is a hand-driven submission session, for what swaks cannot do
// (drip a message a byte at a time).
type smtpConn struct {
	conn net.Conn
	tp   *textproto.Conn
}

func (c *smtpConn) cmd(t *testing.T, line string, want int) string {
	t.Helper()
	if err := c.tp.PrintfLine("%s", line); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.tp.ReadResponse(want)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return msg
}

// dialLoggedIn connects to the submission port, says STARTTLS (trusting the
// relay's CA) and logs in.
func dialLoggedIn(t *testing.T, r *Relay) *smtpConn {
	t.Helper()
	raw, err := net.DialTimeout("tcp", r.Submission, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(60 * time.Second))
	c := &smtpConn{conn: raw, tp: textproto.NewConn(raw)}
	if _, _, err := c.tp.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	c.cmd(t, "EHLO client.test", 250)
	c.cmd(t, "STARTTLS", 220)
	pem, err := os.ReadFile(r.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.tp = tc, textproto.NewConn(tc)
	c.cmd(t, "EHLO client.test", 250)
	c.cmd(t, "AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+User+"\x00"+Password)), 235)
	return c
}

// TestHardeningTLSSuites: openssl s_client against everything that listens
// with TLS (465, 587 after STARTTLS, autoconfig over HTTPS, the archive's
// IMAP view): with TLS 1.2, CBC suites with SHA-1 fail the handshake and
// ECDHE with AES-GCM or ChaCha20-Poly1305 succeeds; TLS 1.0 and 1.1 are
// refused.
func TestHardeningTLSSuites(t *testing.T) {
	testutil.RequireTools(t, "openssl", "swaks")
	autoconfig := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	hash, _ := bcrypt.GenerateFromPassword([]byte("audit-pw"), bcrypt.MinCost)
	r := StartRelay(t, RelayOptions{Sections: fmt.Sprintf(`
[autoconfig]
listen_tls = %q
[[archive.viewer]]
username = "auditor"
password_hash = %q
`, autoconfig, hash)})
	if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example")...); !ok {
		t.Fatalf("swaks: %s", out)
	}
	imapPort := FreePort(t)
	serveView(t, r, filepath.Join(r.DataDir, "archive-private-key.asc"), imapPort, &testutil.LockedBuffer{})
	WaitListening(t, autoconfig, 10*time.Second)

	endpoints := []struct {
		name string
		args []string
	}{
		{"465 (implicit TLS)", []string{"-connect", r.Submissions}},
		{"587 (STARTTLS)", []string{"-starttls", "smtp", "-connect", r.Submission}},
		{"autoconfig over HTTPS", []string{"-connect", autoconfig}},
		{"the archive's IMAP view", []string{"-connect", fmt.Sprintf("127.0.0.1:%d", imapPort)}},
	}
	suites := []struct {
		args []string
		ok   bool
	}{
		{[]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"}, false},
		{[]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA"}, false},
		{[]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"}, true},
		{[]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"}, true},
		{[]string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}, true},
		{[]string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}, false},
		{[]string{"-tls1", "-cipher", "DEFAULT@SECLEVEL=0"}, false},
	}
	for _, ep := range endpoints {
		for _, s := range suites {
			t.Run(ep.name+" "+strings.Join(s.args, " "), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				args := append(append(append([]string{"s_client"}, ep.args...), s.args...), "-CAfile", r.CA)
				cmd := exec.CommandContext(ctx, "openssl", args...)
				cmd.Stdin = strings.NewReader("")
				b, _ := cmd.CombinedOutput()
				out := string(b)
				established := strings.Contains(out, "Verify return code: 0 (ok)") && !strings.Contains(out, "Cipher is (NONE)")
				if s.ok {
					if !established || !strings.Contains(out, "Cipher is "+s.args[2]) {
						t.Errorf("openssl %v: no handshake with %s:\n%s", args, s.args[2], out)
					}
					return
				}
				if established || !strings.Contains(out, "alert") {
					t.Errorf("openssl %v: the handshake was not refused:\n%s", args, out)
				}
			})
		}
	}
}
