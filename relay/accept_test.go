package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
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
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
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
	testutil.WaitFor(t, "two outbox files", func() bool { files = outboxFiles(t, r.dataDir); return len(files) == 2 })
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
	if n := len(r.archive.Messages); n != 1 {
		t.Fatalf("archive has %d messages, want 1", n)
	}
	id := r.archive.Messages[0].ID
	testutil.WaitFor(t, "delivered events for both recipients", func() bool {
		r.archive.Mu.Lock()
		defer r.archive.Mu.Unlock()
		n := 0
		for _, e := range r.archive.Events {
			if e.MessageID == id && e.Kind == "delivered" {
				n += len(e.Recipients)
			}
		}
		return n == 2
	})
	testutil.WaitFor(t, "empty queue", func() bool { return len(r.Queue()) == 0 })
}

// TestReplies is the catalogue of what a therapist's client sees when
// something is wrong (ARCHITECTURE.md, SMTP replies).
func TestReplies(t *testing.T) {
	r := startRelay(t, relayOpts{maxBytes: 4096})
	r.policy.decide = func(rcpt string) (record.Decision, error) {
		switch rcpt {
		case "client@example.org":
			return record.Decision{Protection: record.Refused, RefusalCode: rules.RefusalNothingOnFile,
				Reason: "<client@example.org> has no passphrase, encryption key or written consent to unencrypted email on file; ask your admin to record one"}, nil
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
		}, "550 5.7.1", "Nothing was sent to anybody. <client@example.org> has no passphrase, encryption key or written consent to unencrypted email on file; ask your admin to record one (ref "},
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
			if err := c.Auth(relaytest.LoginClient{User: testUser, Pass: testPassword}); err != nil {
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
	if len(r.archive.Refusals) != 1 || !strings.Contains(r.archive.Refusals[0].Reason, "written consent") || r.archive.Refusals[0].Ref == "" {
		t.Errorf("refusals archived: %+v", r.archive.Refusals)
	}
	// Internal details never reach the client, and client addresses never reach the log.
	logs := r.logs.String()
	if strings.Contains(logs, "client@example.org") || strings.Contains(logs, "down@example.org") {
		t.Errorf("a client address is in the log in clear:\n%s", logs)
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
			s := relaytest.RawDial(t, r.addrs.Submission.String())
			s.Cmd("EHLO client.test")
			s.StartTLS(r.pki.Pool)
			s.Cmd("EHLO client.test")
			if code, msg := s.Cmd("AUTH PLAIN AHRoZXJhcGlzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk="); code != 235 {
				t.Fatalf("AUTH: %d %s", code, msg)
			}
			s.Cmd("MAIL FROM:<" + testFrom + ">")
			s.Cmd("RCPT TO:<a@practice.example>")
			if code, _ := s.Cmd("DATA"); code != 354 {
				t.Fatalf("DATA: %d", code)
			}
			io.WriteString(s.Conn, "From: "+testFrom+"\r\nSubject: s\r\n\r\n"+tt.data+"\r\n.\r\n")
			code, msg := s.Read()
			if code != 554 || !strings.HasPrefix(msg, "5.6.0") {
				t.Fatalf("got %d %s, want 554 5.6.0", code, msg)
			}
			// The session is still usable, and nothing was queued.
			if code, _ := s.Cmd("NOOP"); code != 250 {
				t.Fatalf("session unusable after refusal: %d", code)
			}
		})
	}
	if n := len(outboxFiles(t, r.dataDir)); n != 0 || len(r.Queue()) != 0 || len(r.archive.Messages) != 0 {
		t.Fatalf("a refused message went somewhere: outbox %d, queue %d, archive %d", n, len(r.Queue()), len(r.archive.Messages))
	}
}

// TestBDATSmuggling: CHUNKING feeds the same checks as DATA.
func TestBDATSmuggling(t *testing.T) {
	r := startRelay(t, relayOpts{})
	s := loggedIn(t, r)
	s.Cmd("MAIL FROM:<" + testFrom + ">")
	s.Cmd("RCPT TO:<a@practice.example>")
	chunk := "From: " + testFrom + "\r\nSubject: s\r\n\r\nx\n.\nMAIL FROM:<" + testFrom + ">\r\n"
	fmt.Fprintf(s.Conn, "BDAT %d LAST\r\n%s", len(chunk), chunk)
	if code, msg := s.Read(); code != 554 || !strings.HasPrefix(msg, "5.6.0") {
		t.Fatalf("BDAT with a bare LF: %d %s, want 554 5.6.0", code, msg)
	}
	if code, _ := s.Cmd("NOOP"); code != 250 {
		t.Fatal("session did not survive")
	}
	if len(r.Queue()) != 0 {
		t.Fatal("a message was queued")
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
	testutil.WaitFor(t, "the message in the outbox", func() bool { return len(outboxFiles(t, r.dataDir)) == 1 })
	got := outboxFiles(t, r.dataDir)[0]
	if strings.Contains(got, "X-Sealpost-Decision") || strings.Contains(got, "Auto-Submitted") || !strings.Contains(got, "X-Kept: yes") {
		t.Fatalf("private headers not stripped, or others lost:\n%s", got)
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
			r.archive.FailWith = tt.err
			queueDir := filepath.Join(r.dataDir, "spool", "queue")
			var sawSpooled atomic.Bool
			if tt.afterSpooled {
				r.archive.AfterRead = func() {
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
			r.archive.AfterRead = nil
			r.archive.FailWith = nil
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
	r.archive.Mu.Lock()
	defer r.archive.Mu.Unlock()
	if len(r.archive.Messages) != 1 || len(r.archive.Events) != 1 || r.archive.Events[0].Kind != archive.Aborted ||
		r.archive.Events[0].MessageID != r.archive.Messages[0].ID {
		t.Fatalf("archive: %d messages, events %+v; want the message and its Aborted event", len(r.archive.Messages), r.archive.Events)
	}
}

// TestAddressesNotPlain: an address whose normalisation would change it
// other than by A-Z case or a valid IDN's A-label is refused where the
// client gives it (MAIL, RCPT, From:, Sender:), naming the character, and
// nothing is queued.
func TestAddressesNotPlain(t *testing.T) {
	r := startRelay(t, relayOpts{})
	tests := []struct {
		name       string
		from, rcpt string
		header     string // extra header lines, CRLF-terminated
		headerFrom string
		want       string
		text       string
	}{
		{"full-width letter in the recipient's domain", testFrom, "colleague@\uff50ractice.example", "", testFrom,
			"550 5.1.3", `<colleague@[U+FF50]ractice.example> holds U+FF50, a look-alike of "p"; mail systems would change or drop it`},
		{"zero-width space in the recipient's domain", testFrom, "colleague@prac\u200btice.example", "", testFrom,
			"550 5.1.3", "<colleague@prac[U+200B]tice.example> holds U+200B, an invisible character"},
		{"soft hyphen at the end of the recipient's domain", testFrom, "colleague@practice.example\u00ad", "", testFrom,
			"550 5.1.3", "U+00AD, an invisible character"},
		{"ideographic full stop in the recipient's domain", testFrom, "colleague@practice\u3002example", "", testFrom,
			"550 5.1.3", `U+3002, a look-alike of "."`},
		{"upper case outside A-Z in the recipient's domain", testFrom, "anna@B\u00dcCHER.example", "", testFrom,
			"550 5.1.3", "U+00DC, which becomes U+00FC"},
		{"zero-width joiner in the recipient's local part", testFrom, "col\u200dleague@practice.example", "", testFrom,
			"550 5.1.3", "U+200D, an invisible character"},
		{"full-width letter in the recipient's local part", testFrom, "\uff43olleague@practice.example", "", testFrom,
			"550 5.1.3", `U+FF43, a look-alike of "c"`},
		{"zero-width space in MAIL FROM", "therapist@practice.example\u200b", "colleague@practice.example", "", testFrom,
			"553 5.1.7", "<therapist@practice.example[U+200B]> holds U+200B"},
		{"full-width letter in MAIL FROM's local part", "\uff54herapist@practice.example", "colleague@practice.example", "", testFrom,
			"553 5.1.7", `U+FF54, a look-alike of "t"`},
		{"full-width letter in the From: header", testFrom, "colleague@practice.example", "", "Therapist <therapist@\uff50ractice.example>",
			"550 5.1.7", "<therapist@[U+FF50]ractice.example> in the From: header holds U+FF50"},
		{"soft hyphen in the Sender: header", testFrom, "colleague@practice.example", "Sender: thera\u00adpist@practice.example\r\n", testFrom,
			"550 5.1.7", "in the Sender: header holds U+00AD"},
		{"zero-width space in a Resent-From: header", testFrom, "colleague@practice.example", "Resent-From: therapist@practice.example\u200b\r\n", testFrom,
			"550 5.1.7", "in the Resent-From: header holds U+200B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := r.login(t)
			msg := tt.header + testMessage(tt.headerFrom, "colleague@practice.example", "s", "x")
			err := send(c, tt.from, []string{tt.rcpt}, msg)
			if got := smtpCode(err); got != tt.want {
				t.Fatalf("reply %s (%v), want %s", got, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) || !strings.Contains(err.Error(), "type the address plainly") {
				t.Fatalf("reply %q does not say %q and how to fix it", err, tt.text)
			}
		})
	}
	if n := len(r.Queue()); n != 0 || len(r.archive.Messages) != 0 {
		t.Errorf("%d queued, %d archived; want nothing", n, len(r.archive.Messages))
	}
}

// TestDeliveredAsDecided: what goes out (the provider's envelope, the
// outbox's Return-Path and Delivered-To, the record) is the normalised
// address the decision was made on, not the text the client typed.
func TestDeliveredAsDecided(t *testing.T) {
	tests := []struct {
		name, from, rcpt  string
		wantFrom, wantTo  string
		decidedOn         string // what the policy was asked about
		headerFrom        string
		upperCaseAccounts bool
	}{
		{"upper case", "Therapist@PRACTICE.Example", "Colleague@Practice.EXAMPLE",
			testFrom, "colleague@practice.example", "colleague@practice.example", testFrom, false},
		{"an IDN's U-label", testFrom, "anna@b\u00fccher.example",
			testFrom, "anna@xn--bcher-kva.example", "anna@xn--bcher-kva.example", testFrom, false},
		{"an IDN's A-label in upper case", "second@practice.example", "Anna@XN--BCHER-KVA.example",
			"second@practice.example", "anna@xn--bcher-kva.example", "anna@xn--bcher-kva.example", "Second@practice.example", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelay(t, relayOpts{})
			var asked []string
			r.policy.decide = func(rcpt string) (record.Decision, error) {
				asked = append(asked, rcpt)
				return record.Decision{Protection: record.Internal}, nil
			}
			c := r.login(t)
			if err := send(c, tt.from, []string{tt.rcpt}, testMessage(tt.headerFrom, tt.rcpt, "s", "x")); err != nil {
				t.Fatalf("send: %v", err)
			}
			var files []string
			testutil.WaitFor(t, "the outbox file", func() bool { files = outboxFiles(t, r.dataDir); return len(files) == 1 })
			if want := "Return-Path: <" + tt.wantFrom + ">\r\nDelivered-To: " + tt.wantTo + "\r\n"; !strings.HasPrefix(files[0], want) {
				t.Errorf("outbox file starts %q, want %q", files[0][:min(len(files[0]), len(want)+20)], want)
			}
			if len(asked) != 1 || asked[0] != tt.decidedOn {
				t.Errorf("policy asked about %q, want %q", asked, tt.decidedOn)
			}
			r.archive.Mu.Lock()
			m := r.archive.Messages[0]
			r.archive.Mu.Unlock()
			if m.Sender != tt.wantFrom || len(m.Decisions) != 1 || m.Decisions[0].Recipient != tt.wantTo || m.Decisions[0].Address != tt.wantTo {
				t.Errorf("archived sender %q, decisions %+v; want %q to %q", m.Sender, m.Decisions, tt.wantFrom, tt.wantTo)
			}
			testutil.WaitFor(t, "the delivery recorded", func() bool {
				r.archive.Mu.Lock()
				defer r.archive.Mu.Unlock()
				for _, e := range r.archive.Events {
					if e.Kind == "delivered" {
						return len(e.Recipients) == 1 && e.Recipients[0] == tt.wantTo
					}
				}
				return false
			})
		})
	}
}

// TestOriginatorFieldsBound: Resent-From and Resent-Sender, in every block
// of resent fields, and Author are bound to the account as From and Sender
// are; the fields that only say where answers go are not.
func TestOriginatorFieldsBound(t *testing.T) {
	r := startRelay(t, relayOpts{})
	const other = "boss@practice.example"
	tests := []struct {
		name   string
		header string // lines before From:
		want   string
		text   string
	}{
		{"Resent-From of another address", "Resent-From: " + other + "\r\n", "550 5.7.1",
			"<boss@practice.example> in the Resent-From: header is not an address of account therapist"},
		{"Resent-Sender of another address", "Resent-From: " + testFrom + "\r\nResent-Sender: " + other + "\r\n", "550 5.7.1",
			"in the Resent-Sender: header is not an address"},
		{"another address in an earlier resent block", "Resent-From: " + testFrom + "\r\nResent-Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n" +
			"Resent-From: " + other + "\r\nResent-Date: Sun, 1 Nov 2026 10:00:00 +0000\r\n", "550 5.7.1", "in the Resent-From: header"},
		{"another address beside the account's in Resent-From", "Resent-From: " + testFrom + ", Boss <" + other + ">\r\n", "550 5.7.1", "Resent-From"},
		{"Resent-From in other case", "RESENT-FROM: " + other + "\r\n", "550 5.7.1", "Resent-From"},
		{"Author of another address", "Author: " + other + "\r\n", "550 5.7.1", "in the Author: header"},
		{"unreadable Resent-From", "Resent-From: not an address\r\n", "550 5.6.0", "its Resent-From: header cannot be read"},
		{"empty Resent-From", "Resent-From: \r\n", "550 5.6.0", "Resent-From: header cannot be read"},
		{"two mailboxes in Resent-Sender", "Resent-From: " + testFrom + "\r\nResent-Sender: " + testFrom + ", second@practice.example\r\n", "550 5.6.0",
			"Resent-Sender: header cannot be read"},
		{"resent by the account itself", "Resent-From: Therapist <" + testFrom + ">\r\nResent-Sender: Second@practice.example\r\n" +
			"Resent-Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nResent-To: colleague@practice.example\r\n", "ok", ""},
		{"answers directed elsewhere", "Reply-To: " + other + "\r\nMail-Followup-To: " + other + "\r\nDisposition-Notification-To: " + other + "\r\n",
			"ok", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := r.login(t)
			err := send(c, testFrom, []string{"colleague@practice.example"}, tt.header+testMessage(testFrom, "colleague@practice.example", "s", "x"))
			if got := smtpCode(err); got != tt.want {
				t.Fatalf("reply %s (%v), want %s", got, err, tt.want)
			}
			if tt.text != "" && !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("reply %q does not say %q", err, tt.text)
			}
		})
	}
}

// BenchmarkSubmit measures accepting 4 KB messages over STARTTLS with 20
// concurrent sessions (each message durable in the spool before its 250).
func BenchmarkSubmit(b *testing.B) {
	r := startRelayB(b)
	body := testMessage(testFrom, "a@practice.example", "bench", strings.Repeat(strings.Repeat("x", 78)+"\r\n", 50))
	const sessions = 20
	var wg sync.WaitGroup
	per := b.N/sessions + 1
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.DialStartTLS(r.addrs.Submission.String(), &tls.Config{RootCAs: r.pki.Pool, ServerName: "localhost"})
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			if err := c.Auth(sasl.NewPlainClient("", testUser, testPassword)); err != nil {
				b.Error(err)
				return
			}
			for i := 0; i < per; i++ {
				if err := send(c, testFrom, []string{"a@practice.example"}, body); err != nil {
					b.Error(fmt.Errorf("send: %w", err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		logs := r.logs.String()
		b.Log(logs[:min(len(logs), 3000)])
	}
}
