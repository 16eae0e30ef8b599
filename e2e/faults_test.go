package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// consentAll records consent for clients so that they may get mail in clear.
func consentAll(t *testing.T, r *Relay, clients ...string) {
	t.Helper()
	for _, c := range clients {
		if _, errOut, code := r.Run(t, "", "consent", "add", c, "--evidence", "signed form"); code != 0 {
			t.Fatal(errOut)
		}
	}
}

// queueEmpty is true when `sealpost queue list` shows nothing queued.
func queueEmpty(t *testing.T, r *Relay) bool {
	out, _, _ := r.Run(t, "", "queue", "list")
	return strings.Contains(out, "The queue is empty.")
}

// TestProviderDefersSomeRecipients: Postfix answers 450 for one recipient
// and accepts the other. The accepted one is delivered once and never
// again; the deferred one is retried until the message's lifetime ends,
// then the sender gets a delivery status notification naming it. The same
// with a Postfix that does not offer PIPELINING (sealpost then waits for
// each reply before the next command).
func TestProviderDefersSomeRecipients(t *testing.T) {
	for _, tt := range []struct {
		name  string
		extra []string
	}{
		{"pipelining", nil},
		{"without pipelining", []string{"smtpd_discard_ehlo_keywords = pipelining"}},
	} {
		t.Run(tt.name, func(t *testing.T) { providerDefersSomeRecipients(t, tt.extra) })
	}
}

func providerDefersSomeRecipients(t *testing.T, extra []string) {
	p := StartPostfix(t, PostfixOptions{SASL: true, Extra: append([]string{
		"smtpd_recipient_restrictions = check_recipient_access inline:{ { busy@client.example = 450 4.2.1 mailbox busy, try later } }, permit_sasl_authenticated, reject",
	}, extra...)})
	r := StartRelay(t, RelayOptions{Upstream: p, RetryMin: "300ms", Lifetime: "4s"})
	consentAll(t, r, "ok@client.example", "busy@client.example")
	if out, ok := Swaks(t, r.SwaksArgs("--to", "ok@client.example,busy@client.example", "--header", "Subject: Two recipients")...); !ok {
		t.Fatal(out)
	}
	testutil.WaitWithin(t, 60*time.Second, "the queue to empty (delivered, then bounced)", func() bool { return queueEmpty(t, r) })
	testutil.WaitWithin(t, 30*time.Second, "the notification at the provider", func() bool {
		for _, m := range p.Sink.Messages(t) {
			if strings.Contains(m.Data, "Undelivered Mail Returned to Sender") {
				return true
			}
		}
		return false
	})
	var toOK, dsn int
	for _, m := range p.Sink.Messages(t) {
		for _, to := range m.To {
			if to == "ok@client.example" {
				toOK++
			}
			if to == "busy@client.example" {
				t.Errorf("the deferred recipient got the message")
			}
		}
		if strings.Contains(m.Data, "Undelivered Mail Returned to Sender") {
			dsn++
			// Sent as the account itself, from and to its own address: a
			// provider may refuse the null sender or a foreign From on a
			// therapist's login (TestDeliveryReportSentAsTheAccount).
			if m.From != From || !strings.Contains(m.Data, "From: sealpost delivery report <"+From+">") {
				t.Errorf("the notification went out from <%s>, not as the account %s", m.From, From)
			}
			if len(m.To) != 1 || m.To[0] != From || !strings.Contains(m.Data, "busy@client.example") || !strings.Contains(m.Data, "450 4.2.1") {
				t.Errorf("the notification (to %v) does not name the recipient and the provider's reply:\n%s", m.To, m.Data)
			}
			if strings.Contains(m.Data, "ok@client.example>:") {
				t.Errorf("the notification lists the recipient that was delivered")
			}
		}
	}
	if toOK != 1 || dsn != 1 {
		t.Errorf("ok@ got %d copies, %d notifications; want exactly 1 each (retries must not resend to who has it)", toOK, dsn)
	}
}

// TestSlowAndFlappingProvider: smtp-sink answers DATA after a delay, then
// goes away while mail is accepted, then comes back: every message answered
// 250 arrives exactly once.
func TestSlowAndFlappingProvider(t *testing.T) {
	sink := StartSink(t, "-w", "1")
	r := StartRelay(t, RelayOptions{Sink: sink, RetryMin: "300ms"})
	send := func(n int, tag string) {
		for i := 0; i < n; i++ {
			if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--header", fmt.Sprintf("Subject: %s %d", tag, i))...); !ok {
				t.Fatal(out)
			}
		}
	}
	send(3, "slow")
	testutil.WaitWithin(t, 30*time.Second, "three slow deliveries", func() bool { return len(sink.Messages(t)) == 3 })
	sink.Stop()
	send(4, "down")
	testutil.WaitWithin(t, 20*time.Second, "a failed attempt", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list")
		return strings.Contains(out, "connect") || strings.Contains(out, "refused")
	})
	sink.Start(t)
	testutil.WaitWithin(t, 60*time.Second, "the queue to drain", func() bool { return queueEmpty(t, r) })
	seen := map[string]int{}
	for _, m := range sink.Messages(t) {
		for _, line := range strings.Split(m.Data, "\n") {
			if line = strings.TrimRight(line, "\r"); strings.HasPrefix(line, "Subject: ") {
				seen[line]++
			}
		}
	}
	if len(seen) != 7 {
		t.Errorf("%d distinct messages at the sink, want 7: %v", len(seen), seen)
	}
	for s, n := range seen {
		if n != 1 {
			t.Errorf("%q arrived %d times", s, n)
		}
	}
}

// TestProviderWithoutSTARTTLS: a provider that does not offer STARTTLS (a
// downgrade, or a misconfiguration) gets nothing in clear: the message
// waits in the queue with the reason.
func TestProviderWithoutSTARTTLS(t *testing.T) {
	sink := StartSink(t)
	r := StartRelay(t, RelayOptions{Sink: sink})
	cfg, _ := os.ReadFile(r.Config)
	os.WriteFile(r.Config, []byte(strings.Replace(string(cfg), `tls = "none"`, `tls = "starttls"`, 1)), 0o600)
	r.Stop(t)
	r.Start(t)
	if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example")...); !ok {
		t.Fatal(out)
	}
	var list string
	testutil.WaitWithin(t, 20*time.Second, "a deferral naming STARTTLS", func() bool {
		list, _, _ = r.Run(t, "", "queue", "list")
		return strings.Contains(strings.ToUpper(list), "STARTTLS")
	})
	if n := len(sink.Messages(t)); n != 0 {
		t.Fatalf("%d messages reached a provider without TLS", n)
	}
}
