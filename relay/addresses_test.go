package relay

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/ids"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

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
	if n := len(r.Queue()); n != 0 || len(r.archive.messages) != 0 {
		t.Errorf("%d queued, %d archived; want nothing", n, len(r.archive.messages))
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
			waitFor(t, "the outbox file", func() bool { files = outboxFiles(t, r.dataDir); return len(files) == 1 })
			if want := "Return-Path: <" + tt.wantFrom + ">\r\nDelivered-To: " + tt.wantTo + "\r\n"; !strings.HasPrefix(files[0], want) {
				t.Errorf("outbox file starts %q, want %q", files[0][:min(len(files[0]), len(want)+20)], want)
			}
			if len(asked) != 1 || asked[0] != tt.decidedOn {
				t.Errorf("policy asked about %q, want %q", asked, tt.decidedOn)
			}
			r.archive.mu.Lock()
			m := r.archive.messages[0]
			r.archive.mu.Unlock()
			if m.Sender != tt.wantFrom || len(m.Decisions) != 1 || m.Decisions[0].Recipient != tt.wantTo || m.Decisions[0].Address != tt.wantTo {
				t.Errorf("archived sender %q, decisions %+v; want %q to %q", m.Sender, m.Decisions, tt.wantFrom, tt.wantTo)
			}
			waitFor(t, "the delivery recorded", func() bool {
				r.archive.mu.Lock()
				defer r.archive.mu.Unlock()
				for _, e := range r.archive.events {
					if e.Kind == "delivered" {
						return len(e.Recipients) == 1 && e.Recipients[0] == tt.wantTo
					}
				}
				return false
			})
		})
	}
}

// TestProviderGetsDecidedAddresses: a message spooled with the addresses
// as typed (by a version that kept them) still goes to the provider with
// the normalised ones, as does everything spooled now.
func TestProviderGetsDecidedAddresses(t *testing.T) {
	pki := newPKI(t)
	p := startProvider(t, pki, NoTLS, "", "")
	u := newSMTPUpstream(p.addr, NoTLS, nil, "relay.test", 5*time.Second)
	sp := func() *spool {
		s, _, err := openSpool(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	t.Cleanup(func() { sp.close() })
	red, _ := addr.NewRedactor([]byte("test key for redaction"))
	q := newQueue(&queue{opts: QueueOptions{Workers: 1, Lifetime: time.Hour, DelayWarning: time.Hour, RetryMin: time.Hour, RetryMax: time.Hour},
		spool: sp, dlv: u, account: func(string) *Account { return &Account{Username: testUser} },
		hostname: "relay.test", log: slog.New(slog.NewTextHandler(io.Discard, nil)), redact: red.Hash,
		now: time.Now, metrics: NewMetrics(prometheus.NewRegistry())})
	if err := q.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.stop(5 * time.Second); u.close() })

	id := ids.New(time.Now())
	in, err := sp.newIncoming(id)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := in.Create("sent")
	io.WriteString(w, "From: "+testFrom+"\r\nSubject: s\r\n\r\nx\r\n")
	w.Close()
	e := newEntry(sp, id, testUser, "Therapist@PRACTICE.example", time.Now(),
		[]rules.Copy{{Name: "sent", Recipients: []string{"Anna@B\u00fccher.example"}, Protection: record.Internal}}, false)
	if err := in.commit(e, false); err != nil {
		t.Fatal(err)
	}
	in.confirm()
	q.add(e)
	waitFor(t, "the provider to get the message", func() bool { return len(p.messages()) == 1 })
	m := p.messages()[0]
	if m.from != testFrom || len(m.to) != 1 || m.to[0] != "anna@xn--bcher-kva.example" {
		t.Errorf("provider's envelope: from %q to %q; want %q to anna@xn--bcher-kva.example", m.from, m.to, testFrom)
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
