package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// TestConsentLifecycle: with the relay running throughout, a client without
// consent is refused at RCPT with the reason in a therapist's words and a
// reference (never an admin's command); after `sealpost consent add`
// the same message goes out (through a real Postfix) with the notice; after
// `sealpost consent revoke` it is refused again.
func TestConsentLifecycle(t *testing.T) {
	p := StartPostfix(t, PostfixOptions{SASL: true})
	r := StartRelay(t, RelayOptions{Upstream: p})
	client := "anna@client.example"
	sendToClient := func() (string, bool) {
		return Swaks(t, r.SwaksArgs("--to", client, "--header", "Subject: Tuesday", "--body", "See you on Tuesday.")...)
	}
	out, ok := sendToClient()
	want := "<~* 550 5.7.1 Nothing was sent to anybody. <" + client + "> has no passphrase, encryption key or written consent to unencrypted email on file; ask your admin to record one (ref "
	if ok || !strings.Contains(out, want) || strings.Contains(out, "sealpost consent") {
		t.Fatalf("without consent, want %q:\n%s", want, out)
	}
	if stdout, stderr, code := r.Run(t, "", "consent", "add", client, "--evidence", "email consent form, paper chart 17", "--date", "2026-01-05", "--name", "Chart 17"); code != 0 {
		t.Fatalf("consent add: exit %d\n%s%s", code, stdout, stderr)
	}
	if out, ok := sendToClient(); !ok {
		t.Fatalf("with consent the message was refused:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "the message at the provider's sink", func() bool { return len(p.Sink.Messages(t)) == 1 })
	m := p.Sink.Messages(t)[0]
	if len(m.To) != 1 || m.To[0] != client || !strings.Contains(m.Data, "See you on Tuesday.") || !strings.Contains(m.Data, "Notice of Confidentiality: e2e.") {
		t.Fatalf("delivered copy (to %v) lacks the body or the notice:\n%s", m.To, m.Data)
	}
	if stdout, stderr, code := r.Run(t, "", "consent", "revoke", client, "--reason", "asked for encrypted mail"); code != 0 {
		t.Fatalf("consent revoke: exit %d\n%s%s", code, stdout, stderr)
	}
	out, ok = sendToClient()
	if ok || !strings.Contains(out, "550 5.7.1 Nothing was sent to anybody. <"+client+"> withdrew consent to unencrypted email on ") {
		t.Fatalf("after the revocation:\n%s", out)
	}
	if strings.Contains(r.Logs.String(), client) {
		t.Error("the client's address is in the relay's log in clear")
	}
}
