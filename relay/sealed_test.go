package relay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/sealed"
)

// The relay with the real policy and registry, a key holder's key and
// encryption faked, and a stub for sealed.Seal: what reaches whom, and
// what the record says, are the relay's and the policy's.

const (
	keyHolder    = "key@client.example"
	sealedClient = "sealed@client.example"
	consented    = "consented@client.example"
	colleague    = "colleague@practice.example"
	sealedPass   = "violet harbor lantern quietly"
)

type keysOf map[string]string // address -> fingerprint

func (k keysOf) Lookup(ctx context.Context, address string) (rules.KeyLookup, error) {
	if f, ok := k[address]; ok {
		return rules.KeyLookup{Status: rules.KeyUsable, Fingerprint: f}, nil
	}
	return rules.KeyLookup{Status: rules.KeyNone}, nil
}

type markEncrypter struct{}

func (markEncrypter) EncryptMIME(ctx context.Context, w io.Writer, msg io.Reader, fprs []string) error {
	fmt.Fprintf(w, "ENCRYPTED TO %s\r\n", strings.Join(fprs, ","))
	_, err := io.Copy(w, msg)
	return err
}

// stubSeal writes the passphrase and the plain copy; a message over
// MaxBytes is too large, one holding BROKEN cannot be decoded.
func stubSeal(w io.Writer, msg io.Reader, o sealed.Options) (sealed.Result, error) {
	b, err := io.ReadAll(msg)
	if err != nil {
		return sealed.Result{}, err
	}
	switch {
	case int64(len(b)) > o.MaxBytes:
		return sealed.Result{}, sealed.ErrTooLarge
	case strings.Contains(string(b), "BROKEN"):
		return sealed.Result{}, &sealed.MalformedError{Reason: "the base64 encoding of its part 2 is damaged"}
	}
	out := "SEALED WITH " + o.Passphrase + "\r\nSubject: " + o.Subject + "\r\n" + string(b)
	sum := sha256.Sum256([]byte(out))
	_, err = io.WriteString(w, out)
	return sealed.Result{PDFSHA256: hex.EncodeToString(sum[:]), PDFSize: int64(len(out))}, err
}

type sealedRelay struct {
	*testRelay
	reg *rules.Registry
}

func startSealedRelay(t *testing.T, o relayOpts) *sealedRelay {
	t.Helper()
	reg, err := rules.OpenRegistry(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	ctx := context.Background()
	if _, err := reg.Add(ctx, record.ConsentEvent{Client: "Chart 3", Addresses: []string{consented}, Signed: "2026-01-02", Evidence: "form", RecordedBy: "admin"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.SetPassphrase(ctx, []string{sealedClient}, "Chart 4", sealedPass, "admin"); err != nil {
		t.Fatal(err)
	}
	policy, err := rules.NewPolicy(rules.PolicyConfig{InternalDomains: []string{"practice.example"}, Notice: "Notice of Confidentiality: test.",
		Registry: reg, Keys: keysOf{keyHolder: "AAAA"}, Encrypter: markEncrypter{}, Sealer: stubSeal,
		Sealed: &rules.SealedSettings{PracticeName: "Practice", Subject: "Secure message from Practice", Text: "Open message.pdf.", MaxBytes: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	o.rules, o.consentCheck, o.sealedCheck = policy, policy.RecheckConsent, policy.RecheckSealed
	return &sealedRelay{testRelay: startRelay(t, o), reg: reg}
}

// stripTrace takes the outbox's Return-Path and Delivered-To off a copy.
func stripTrace(s string) (rcpt, body string) {
	_, rest, _ := strings.Cut(s, "\r\nDelivered-To: ")
	rcpt, body, _ = strings.Cut(rest, "\r\n")
	return rcpt, body
}

// TestMixedSendWithSealed: a key holder, a sealed client, a consented
// client and a colleague in one message: four copies, each as its
// recipient's decision says, none crossing; the record has every decision
// and the sealed PDF's hash, and every delivery.
func TestMixedSendWithSealed(t *testing.T) {
	r := startSealedRelay(t, relayOpts{})
	c := r.login(t)
	msg := "From: " + testFrom + "\r\nTo: " + keyHolder + ", " + sealedClient + ", " + consented + "\r\nCc: " + colleague +
		"\r\nSubject: Session notes\r\nMessage-ID: <mix@test>\r\n\r\nSee you on Tuesday.\r\n"
	if err := send(c, testFrom, []string{keyHolder, sealedClient, consented, colleague}, msg); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "four deliveries", func() bool { return len(outboxFiles(t, r.dataDir)) == 4 })
	got := map[string]string{}
	for _, f := range outboxFiles(t, r.dataDir) {
		rcpt, body := stripTrace(f)
		got[rcpt] = body
	}
	plain := r.archive.Bodies[0]
	for rcpt, body := range got {
		var want string
		switch rcpt {
		case keyHolder:
			want = "ENCRYPTED TO AAAA\r\n" + string(plain)
		case sealedClient:
			want = "SEALED WITH " + sealedPass + "\r\nSubject: Secure message from Practice\r\n" + string(plain)
		case consented, colleague:
			want = string(plain)
		}
		if body != want {
			t.Errorf("%s got\n%s\nwant\n%s", rcpt, body, want)
		}
	}
	if len(got) != 4 || !strings.Contains(string(plain), "Notice of Confidentiality") || strings.Contains(string(plain), "SEALED") {
		t.Fatalf("recipients %d; plain copy:\n%s", len(got), plain)
	}
	testutil.WaitFor(t, "the queue to empty", func() bool { return len(r.Queue()) == 0 })
	r.archive.Mu.Lock()
	defer r.archive.Mu.Unlock()
	m := r.archive.Messages[0]
	protections := map[string]string{}
	for _, d := range m.Decisions {
		protections[d.Address] = string(d.Protection)
		if d.Protection == record.Sealed {
			sum := sha256.Sum256([]byte(got[sealedClient]))
			if d.SealedPDFSHA256 != hex.EncodeToString(sum[:]) || d.SealedPDFSize != int64(len(got[sealedClient])) ||
				d.Consent == nil || d.Consent.Kind != record.PassphraseSet {
				t.Errorf("the record of the sealed recipient: %+v", d)
			}
		} else if d.SealedPDFSHA256 != "" {
			t.Errorf("%s has a sealed PDF in the record", d.Address)
		}
	}
	want := fmt.Sprint(map[string]string{keyHolder: "encrypted", sealedClient: "sealed", consented: "consented", colleague: "internal"})
	if fmt.Sprint(protections) != want {
		t.Errorf("recorded decisions %v; want %s", protections, want)
	}
	delivered := map[string]bool{}
	for _, ev := range r.archive.Events {
		for _, rc := range ev.Recipients {
			delivered[rc] = delivered[rc] || ev.Kind == archive.Delivered
		}
	}
	if len(delivered) != 4 || !delivered[sealedClient] || !delivered[keyHolder] || !delivered[consented] || !delivered[colleague] {
		t.Errorf("deliveries recorded %v", delivered)
	}
}

// TestPassphraseRemovedWhileQueued: a sealed copy that waits in the queue
// is not sent once the client's passphrase is removed; the sender gets a
// failure notice saying why, the record has it, and the others got theirs.
func TestPassphraseRemovedWhileQueued(t *testing.T) {
	pki := testutil.NewPKI(t)
	p := relaytest.StartProvider(t, pki, string(StartTLS), "", "")
	var reg atomic.Pointer[rules.Registry]
	var tries atomic.Int32
	p.RcptErr = func(rcpt string) error {
		if rcpt == sealedClient && tries.Add(1) == 1 {
			// The admin removes the passphrase while the copy waits.
			if _, err := reg.Load().RemovePassphrase(context.Background(), []string{sealedClient}, "admin"); err != nil {
				t.Error(err)
			}
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}
	r := startSealedRelay(t, relayOpts{upstream: upstreamOf(t, p, pki, StartTLS)})
	reg.Store(r.reg)
	c := r.login(t)
	if err := send(c, testFrom, []string{sealedClient, colleague}, testMessage(testFrom, sealedClient, "notes", "x")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the queue to drain", func() bool { return len(r.Queue()) == 0 })
	var toSealed, notices int
	var notice string
	for _, m := range p.Messages() {
		switch {
		case m.From == testFrom && len(m.To) == 1 && m.To[0] == testFrom && strings.Contains(m.Data, "multipart/report"):
			notices++
			notice = strings.ReplaceAll(m.Data, "=\r\n", "")
		case len(m.To) == 1 && m.To[0] == sealedClient:
			toSealed++
		}
	}
	if toSealed != 0 || notices != 1 || tries.Load() != 1 {
		t.Fatalf("the sealed client got %d copies, the sender %d notices, %d tries; want 0, 1, 1", toSealed, notices, tries.Load())
	}
	for _, want := range []string{"Final-Recipient: rfc822; " + sealedClient, "Status: 5.7.1", "passphrase removed on 20"} {
		if !strings.Contains(notice, want) {
			t.Errorf("the notice lacks %q:\n%s", want, notice)
		}
	}
	kinds := r.archive.EventKinds(r.archive.Messages[0].ID)
	if !relaytest.ContainsKind(kinds, archive.Bounced) || !relaytest.ContainsKind(kinds, archive.Delivered) {
		t.Errorf("archived %v; want the colleague's delivery and the sealed client's failure", kinds)
	}
}

// TestSealingRefusedAtData: a message too large to seal, or with a part
// that cannot be decoded, is refused at DATA with the reason; nothing is
// queued or sent, and the record has the refusal, not the message.
func TestSealingRefusedAtData(t *testing.T) {
	tests := []struct {
		name, body, code, reason string
	}{
		{"too large", strings.Repeat("long line of text ", 400), "552 5.3.4", "too large to send as a sealed PDF to <" + sealedClient + "> (over 4 KB)"},
		{"cannot be decoded", "BROKEN", "554 5.6.0", "damaged: the base64 encoding of its part 2 is damaged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startSealedRelay(t, relayOpts{})
			c := r.login(t)
			err := send(c, testFrom, []string{sealedClient, colleague}, testMessage(testFrom, sealedClient, "notes", tt.body))
			if smtpCode(err) != tt.code || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("reply %v; want %s with %q", err, tt.code, tt.reason)
			}
			if len(r.Queue()) != 0 || len(outboxFiles(t, r.dataDir)) != 0 {
				t.Fatal("something was queued or sent")
			}
			r.archive.Mu.Lock()
			defer r.archive.Mu.Unlock()
			if len(r.archive.Messages) != 0 || len(r.archive.Events) != 0 || len(r.archive.Refusals) != 1 ||
				!strings.Contains(r.archive.Refusals[0].Reason, tt.reason) {
				t.Fatalf("archived %d messages, %d events, refusals %+v; want the refusal alone", len(r.archive.Messages), len(r.archive.Events), r.archive.Refusals)
			}
		})
	}
}
