package e2e

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// TestSwaksSubmission drives the relay with swaks the way a mail client
// would, and with the mistakes and attacks a relay must refuse.
func TestSwaksSubmission(t *testing.T) {
	testutil.RequireTools(t, "swaks")
	r := StartRelay(t, RelayOptions{})
	big := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(big, make([]byte, 11<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		ok     bool
		expect []string // must all appear in the transcript
	}{
		{"STARTTLS and AUTH PLAIN", r.SwaksArgs("--to", "colleague@practice.example"), true, []string{"<~  250 2.0.0 OK: queued as"}},
		{"AUTH LOGIN (Outlook)", append(r.SwaksArgs("--to", "colleague@practice.example"), "--auth", "LOGIN"), true, []string{"334 VXNlcm5hbWU6", "235 2.0.0"}},
		{"implicit TLS", []string{"--server", r.Submissions, "--tlsc", "--tls-ca-path", r.CA, "--auth", "PLAIN", "--auth-user", User,
			"--auth-password", Password, "--from", From, "--to", "colleague@practice.example"}, true, []string{"250 2.0.0 OK: queued as"}},
		{"wrong password", []string{"--server", r.Submission, "--tls", "--tls-ca-path", r.CA, "--auth", "PLAIN", "--auth-user", User,
			"--auth-password", "wrong", "--from", From, "--to", "colleague@practice.example"}, false, []string{"535 5.7.8 Authentication credentials invalid"}},
		{"AUTH before TLS", []string{"--server", r.Submission, "--auth", "PLAIN", "--auth-user", User, "--auth-password", Password,
			"--auth-hide-password", "--from", From, "--to", "colleague@practice.example", "--quit-after", "AUTH"}, false, []string{"Host did not advertise authentication"}},
		{"unauthenticated relaying", []string{"--server", r.Submission, "--tls", "--tls-ca-path", r.CA, "--from", From,
			"--to", "someone@elsewhere.example"}, false, []string{"530 5.7.0 Authentication required"}},
		{"sender not the account's", []string{"--server", r.Submission, "--tls", "--tls-ca-path", r.CA, "--auth", "PLAIN", "--auth-user", User,
			"--auth-password", Password, "--from", "boss@practice.example", "--to", "colleague@practice.example"}, false,
			[]string{"550 5.7.1 <boss@practice.example> is not an address of account therapist"}},
		{"header From not the account's", append(r.SwaksArgs("--to", "colleague@practice.example"), "--header", "From: boss@practice.example"), false,
			[]string{"550 5.7.1 <boss@practice.example> in the From: header is not an address of account therapist"}},
		{"bare LF smuggling", append(r.SwaksArgs("--to", "colleague@practice.example"), "--no-data-fixup", "--data",
			"From: "+From+"\r\nSubject: x\r\n\r\nline\n.\nMAIL FROM:<"+From+">\r\n.\r\n"), false, []string{"554 5.6.0"}},
		{"bare CR smuggling", append(r.SwaksArgs("--to", "colleague@practice.example"), "--no-data-fixup", "--data",
			"From: "+From+"\r\nSubject: x\r\n\r\nline\r.\rMAIL FROM:<"+From+">\r\n.\r\n"), false, []string{"554 5.6.0"}},
		{"EHLO over 512 octets", append(r.SwaksArgs("--to", "colleague@practice.example"), "--ehlo", strings.Repeat("h", 600)+".example"), false,
			[]string{"500 5.5.2 Command line too long"}},
		{"too big", append(r.SwaksArgs("--to", "colleague@practice.example"), "--attach-type", "application/octet-stream",
			"--attach", "@"+big), false, []string{"552 5.3.4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, ok := Swaks(t, tt.args...)
			if ok != tt.ok {
				t.Fatalf("swaks exit ok=%v, want %v:\n%s", ok, tt.ok, out)
			}
			for _, e := range tt.expect {
				if !strings.Contains(out, e) {
					t.Errorf("transcript lacks %q:\n%s", e, out)
				}
			}
		})
	}
	// AUTH is offered only inside TLS.
	out, _ := Swaks(t, "--server", r.Submission, "--quit-after", "EHLO")
	if strings.Contains(out, "AUTH") || !strings.Contains(out, "STARTTLS") {
		t.Errorf("EHLO before TLS must offer STARTTLS and no AUTH:\n%s", out)
	}
	out, _ = Swaks(t, "--server", r.Submission, "--tls", "--tls-ca-path", r.CA, "--quit-after", "EHLO")
	if !strings.Contains(out, "250-AUTH PLAIN LOGIN") {
		t.Errorf("EHLO after TLS must offer AUTH PLAIN LOGIN:\n%s", out)
	}
	testutil.WaitWithin(t, 10*time.Second, "three messages in the outbox", func() bool { return len(r.Outbox(t)) == 3 })
	for _, m := range r.Outbox(t) {
		if !strings.HasPrefix(m, "Return-Path: <"+From+">\r\nDelivered-To: colleague@practice.example\r\n") {
			t.Errorf("outbox file does not start with Return-Path and Delivered-To:\n%.300s", m)
		}
	}
}

// TestDeliveryToPostfix: sealpost delivers to a real Postfix over STARTTLS
// with SASL (through Dovecot), verifying Postfix's certificate against the
// configured ca_file; Postfix relays into smtp-sink.
func TestDeliveryToPostfix(t *testing.T) {
	p := StartPostfix(t, PostfixOptions{SASL: true})
	r := StartRelay(t, RelayOptions{Upstream: p})
	// Lines that begin with a dot, one of them alone: swaks stuffs them,
	// sealpost unstuffs and stuffs them again for Postfix.
	body := "first\n.\n..two dots\n.one dot\nlast"
	out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example,other@practice.example", "--header", "Subject: to the provider", "--body", body)...)
	if !ok {
		t.Fatalf("submission failed:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "the message at the sink", func() bool { return len(p.Sink.Messages(t)) == 1 })
	m := p.Sink.Messages(t)[0]
	if m.From != From || strings.Join(m.To, ",") != "colleague@practice.example,other@practice.example" {
		t.Errorf("sink envelope: from %q to %v", m.From, m.To)
	}
	if !strings.Contains(m.Data, "Subject: to the provider") || !strings.Contains(m.Data, "(sealpost) with ESMTPSA") ||
		!strings.Contains(strings.ReplaceAll(m.Data, "\r\n", "\n"), body) {
		t.Errorf("sink message:\n%s", m.Data)
	}
	log := p.Log()
	if !strings.Contains(log, "sasl_method=PLAIN, sasl_username=therapist@practice.example") {
		t.Errorf("Postfix did not see sealpost log in:\n%s", log)
	}
	if !strings.Contains(log, "TLS connection established from localhost") {
		t.Errorf("sealpost did not use STARTTLS:\n%s", log)
	}
	if stdout, _, code := r.Run(t, "", "check"); code != 0 || !strings.Contains(stdout, "ok   login to "+p.Addr()) {
		t.Errorf("sealpost check (exit %d):\n%s", code, stdout)
	}
}

// TestWrongProviderPassword: a provider that refuses the login keeps the
// message queued (the admin can fix the password file) and check says why.
func TestWrongProviderPassword(t *testing.T) {
	p := StartPostfix(t, PostfixOptions{SASL: true})
	p.Password = "not-the-password"
	r := StartRelay(t, RelayOptions{Upstream: p})
	if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example")...); !ok {
		t.Fatalf("submission failed:\n%s", out)
	}
	stdout, _, code := r.Run(t, "", "check")
	if code != 1 || !strings.Contains(stdout, "FAIL login to") || !strings.Contains(stdout, "535") {
		t.Errorf("check with a wrong provider password (exit %d):\n%s", code, stdout)
	}
	testutil.WaitWithin(t, 20*time.Second, "a failed attempt in the queue", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list")
		return strings.Contains(out, "535")
	})
	if n := len(p.Sink.Messages(t)); n != 0 {
		t.Fatalf("%d messages reached the sink without a login", n)
	}
}

// TestLongBodyLineReencoded: swaks sends a body line of 5000 octets; the
// copy that goes out has no line over 998 octets (RFC 5322) and the same
// text, quoted-printable.
func TestLongBodyLineReencoded(t *testing.T) {
	r := StartRelay(t, RelayOptions{})
	long := strings.Repeat("abcdefghij", 500)
	if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--body", long)...); !ok {
		t.Fatalf("a long body line was refused:\n%s", out)
	}
	testutil.WaitWithin(t, 10*time.Second, "the copy in the outbox", func() bool { return len(r.Outbox(t)) == 1 })
	m := r.Outbox(t)[0]
	for _, line := range strings.Split(m, "\r\n") {
		if len(line) > 998 {
			t.Fatalf("a line of %d octets went out", len(line))
		}
	}
	if !strings.Contains(m, "Content-Transfer-Encoding: quoted-printable") || !strings.Contains(strings.ReplaceAll(m, "=\r\n", ""), long) {
		t.Errorf("the long line is not there, quoted-printable:\n%.500s", m)
	}
}

// TestConnectionsPerAddress: with [smtp] max_connections_per_ip reached, a
// real client from the same address is told 421 4.7.0 and why; once a
// connection closes it gets in.
func TestConnectionsPerAddress(t *testing.T) {
	testutil.RequireTools(t, "swaks")
	r := StartRelay(t, RelayOptions{SMTP: "max_connections_per_ip = 1"})
	// The start-up check's connection may still count for a moment.
	var held net.Conn
	testutil.WaitWithin(t, 10*time.Second, "a connection greeted with 220", func() bool {
		c, err := net.Dial("tcp", r.Submission)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if line, _ := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(line, "220 ") {
			c.Close()
			return false
		}
		held = c
		return true
	})
	defer held.Close()
	out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example")...)
	if ok || !strings.Contains(out, "421 4.7.0 Too many connections from your address") {
		t.Fatalf("swaks beside a held connection: exit ok=%v, want 421 4.7.0 Too many connections from your address:\n%s", ok, out)
	}
	held.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example")...)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swaks after the held connection closed still refused:\n%s", out)
		}
	}
}
