package rules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules/sealed"
)

var testSealedSettings = SealedSettings{PracticeName: "Practice Example", Subject: "Secure message from Practice Example",
	Text: "Open message.pdf with the passphrase agreed at intake.\nReply as usual.", Crisis: "In a crisis call 988.", MaxBytes: 1 << 20}

// stubSealer stands in for sealed.Seal: it writes the passphrase and the
// plain copy, so a test can see which passphrase sealed which copy, and
// returns the SHA-256 of what it wrote as the PDF's.
type stubSealer struct {
	mu    sync.Mutex
	err   error
	calls []sealed.Options
}

func (s *stubSealer) Seal(w io.Writer, msg io.Reader, o sealed.Options) (sealed.Result, error) {
	s.mu.Lock()
	err := s.err
	s.calls = append(s.calls, o)
	s.mu.Unlock()
	if err != nil {
		return sealed.Result{}, err
	}
	b, err := io.ReadAll(msg)
	if err != nil {
		return sealed.Result{}, err
	}
	out := "SEALED WITH " + o.Passphrase + "\r\n" + string(b)
	sum := sha256.Sum256([]byte(out))
	if _, err := io.WriteString(w, out); err != nil {
		return sealed.Result{}, err
	}
	return sealed.Result{PDFSHA256: hex.EncodeToString(sum[:]), PDFSize: int64(len(out))}, nil
}

// passphrase records a passphrase for address, as `sealpost consent passphrase` does.
func (tp *testPolicy) passphrase(t testing.TB, address, p string) record.ConsentEvent {
	t.Helper()
	prepared, err := sealed.CheckPassphrase(p)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := tp.reg.SetPassphrase(context.Background(), []string{address}, "Chart 21", prepared, "admin")
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestDecideSealed: the decision order with passphrases: a usable key
// first, then a passphrase (unless the client's consent asks for clear
// email), then consent, else refused with the passphrase named as a way.
func TestDecideSealed(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(tp *testPolicy, rcpt string)
		want   record.Protection
		reason string
	}{
		{"key and passphrase", func(tp *testPolicy, rcpt string) {
			tp.keys.keys[rcpt] = KeyLookup{Status: KeyUsable, Fingerprint: "ABCD"}
			tp.passphrase(t, rcpt, "correct horse battery staple")
		}, record.Encrypted, "ABCD"},
		{"passphrase", func(tp *testPolicy, rcpt string) {
			tp.passphrase(t, rcpt, "correct horse battery staple")
		}, record.Sealed, "sealed PDF, opened with the client's passphrase set on 2026-"},
		{"passphrase and consent", func(tp *testPolicy, rcpt string) {
			tp.consent(t, rcpt, "2026-01-10", "")
			tp.passphrase(t, rcpt, "correct horse battery staple")
		}, record.Sealed, "sealed PDF"},
		{"passphrase and consent preferring clear", func(tp *testPolicy, rcpt string) {
			tp.reg.Add(context.Background(), record.ConsentEvent{Client: "Chart 21", Addresses: []string{rcpt}, Signed: "2026-01-10",
				Evidence: "form", Prefer: record.PreferClear, RecordedBy: "admin"})
			tp.passphrase(t, rcpt, "correct horse battery staple")
		}, record.Consented, "asked for unencrypted email although a passphrase for sealed PDFs is on file"},
		{"passphrase and an expired consent preferring clear", func(tp *testPolicy, rcpt string) {
			tp.reg.Add(context.Background(), record.ConsentEvent{Addresses: []string{rcpt}, Signed: "2025-01-10", Expires: "2026-01-10",
				Evidence: "form", Prefer: record.PreferClear, RecordedBy: "admin"})
			tp.passphrase(t, rcpt, "correct horse battery staple")
		}, record.Sealed, "sealed PDF"},
		{"passphrase removed, consent on file", func(tp *testPolicy, rcpt string) {
			tp.consent(t, rcpt, "2026-01-10", "")
			tp.passphrase(t, rcpt, "correct horse battery staple")
			tp.reg.RemovePassphrase(context.Background(), []string{rcpt}, "admin")
		}, record.Consented, "consent to unencrypted email signed 2026-01-10"},
		{"passphrase removed, no consent", func(tp *testPolicy, rcpt string) {
			tp.passphrase(t, rcpt, "correct horse battery staple")
			tp.reg.RemovePassphrase(context.Background(), []string{rcpt}, "admin")
		}, record.Refused, "no passphrase"},
		{"passphrase and an expired key", func(tp *testPolicy, rcpt string) {
			tp.keys.keys[rcpt] = KeyLookup{Status: KeyExpired, Detail: "expired on 2026-02-01"}
			tp.passphrase(t, rcpt, "correct horse battery staple")
		}, record.Sealed, "sealed PDF"},
		{"passphrase and a revoked consent", func(tp *testPolicy, rcpt string) {
			tp.consent(t, rcpt, "2026-01-10", "")
			tp.reg.Revoke(context.Background(), rcpt, "by phone", "admin")
			tp.passphrase(t, rcpt, "correct horse battery staple")
		}, record.Sealed, "sealed PDF"},
		{"revoked consent, no passphrase", func(tp *testPolicy, rcpt string) {
			tp.consent(t, rcpt, "2026-01-10", "")
			tp.reg.Revoke(context.Background(), rcpt, "by phone", "admin")
		}, record.Refused, "no passphrase"},
		{"expired key, no passphrase or consent", func(tp *testPolicy, rcpt string) {
			tp.keys.keys[rcpt] = KeyLookup{Status: KeyExpired, Detail: "expired on 2026-02-01"}
		}, record.Refused, "no passphrase"},
		{"colleague with a passphrase", func(tp *testPolicy, rcpt string) {
			tp.passphrase(t, rcpt, "correct horse battery staple")
		}, record.Internal, "internal domain"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTestPolicy(t)
			rcpt := fmt.Sprintf("client%d@client.example", i)
			if tt.want == record.Internal {
				rcpt = "colleague@practice.example"
			}
			tt.setup(tp, rcpt)
			d, err := tp.Decide(context.Background(), "therapist", rcpt)
			if err != nil {
				t.Fatal(err)
			}
			if d.Protection != tt.want || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("%s %q; want %s %q", d.Protection, d.Reason, tt.want, tt.reason)
			}
			if tt.want == record.Sealed {
				st, _ := tp.reg.Current(context.Background(), rcpt, tp.now)
				if d.Consent == nil || d.Consent.Kind != record.PassphraseSet || d.Consent.ID != st.Passphrase.ID {
					t.Fatalf("a sealed decision rests on %+v; want the passphrase-set event %d", d.Consent, st.Passphrase.ID)
				}
			}
		})
	}
}

// TestSealingOff: without [sealed] settings a passphrase on file is not
// used: the decision is as before passphrases.
func TestSealingOff(t *testing.T) {
	tp := newTestPolicy(t)
	tp.passphrase(t, "anna@client.example", "correct horse battery staple")
	p, err := NewPolicy(PolicyConfig{Notice: testNotice, Registry: tp.reg})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := p.Decide(context.Background(), "t", "anna@client.example"); d.Protection != record.Refused {
		t.Fatalf("%s; want refused", d.Protection)
	}
}

const sealedMixMessage = "From: Maria <therapist@practice.example>\r\nTo: key@client.example, sealed@client.example, consented@client.example\r\n" +
	"Cc: colleague@practice.example\r\nBcc: hidden-sealed@client.example\r\nSubject: Session notes\r\n" +
	"Message-ID: <m2@practice.example>\r\n\r\nHello. My SSN is 123-45-6789.\r\n"

// decideAll decides every recipient, failing on a refusal.
func (tp *testPolicy) decideAll(t *testing.T, rcpts ...string) []record.Decision {
	t.Helper()
	var ds []record.Decision
	for _, r := range rcpts {
		d, err := tp.Decide(context.Background(), "therapist", r)
		if err != nil || d.Protection == record.Refused {
			t.Fatalf("%s: %v %v", r, d.Protection, err)
		}
		ds = append(ds, d)
	}
	return ds
}

// TestSealedCopies: each sealed recipient, Bcc too, gets a copy of their
// own sealed with their own passphrase; nobody else is in it, no other
// copy is sealed, and the record learns each PDF's hash.
func TestSealedCopies(t *testing.T) {
	tp := newTestPolicy(t)
	tp.keys.keys["key@client.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "AAAA"}
	tp.consent(t, "consented@client.example", "2026-01-10", "")
	setA := tp.passphrase(t, "sealed@client.example", "first client passphrase")
	setB := tp.passphrase(t, "hidden-sealed@client.example", "second client passphrase")
	ds := tp.decideAll(t, "key@client.example", "sealed@client.example", "consented@client.example", "colleague@practice.example", "hidden-sealed@client.example")
	sink := &memSink{}
	res, err := tp.Apply(context.Background(), Submission{ID: "1", Decisions: ds}, strings.NewReader(sealedMixMessage), sink)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range res.Copies {
		got[c.Name] = fmt.Sprintf("%s %v %d", c.Protection, c.Recipients, c.SealedWith)
	}
	want := map[string]string{
		"sent":     "consented [consented@client.example colleague@practice.example] 0",
		"enc-1":    "encrypted [key@client.example] 0",
		"sealed-1": fmt.Sprintf("sealed [sealed@client.example] %d", setA.ID),
		"sealed-2": fmt.Sprintf("sealed [hidden-sealed@client.example] %d", setB.ID),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("copies\n%v\nwant\n%v", got, want)
	}
	for name, p := range map[string]string{"sealed-1": "first client passphrase", "sealed-2": "second client passphrase"} {
		s := sink.files[name].String()
		if !strings.HasPrefix(s, "SEALED WITH "+p+"\r\n") || !strings.HasSuffix(s, sink.files["sent"].String()) {
			t.Errorf("%s was not sealed with its recipient's passphrase from the plain copy:\n%s", name, s)
		}
	}
	for _, name := range []string{"sent", "enc-1"} {
		if strings.Contains(sink.files[name].String(), "SEALED WITH") {
			t.Errorf("%s holds a sealed copy", name)
		}
	}
	for _, d := range res.Decisions {
		r, ok := res.Sealed[d.Recipient]
		if (d.Protection == record.Sealed) != ok || (ok && (d.SealedPDFSHA256 != r.PDFSHA256 || d.SealedPDFSize != r.PDFSize || r.PDFSHA256 == "")) {
			t.Errorf("%s: %s, sealed result %+v, decision hash %q", d.Address, d.Protection, r, d.SealedPDFSHA256)
		}
	}
	o := tp.sealer.calls[0]
	if o.Subject != testSealedSettings.Subject || !strings.Contains(o.Text, "agreed at intake") || !strings.HasSuffix(o.Text, "In a crisis call 988.") ||
		!strings.Contains(o.HTML, "<p>Open message.pdf with the passphrase agreed at intake.<br>\nReply as usual.</p>") ||
		!strings.HasPrefix(o.Notice, "Notice of Confidentiality") || o.MaxBytes != 1<<20 || o.PracticeName != "Practice Example" {
		t.Errorf("sealed with options %+v", o)
	}
}

// TestContentRulesSkipSealed: the content rules guard what goes to a
// client in clear; a sealed copy is readable only with its passphrase.
func TestContentRulesSkipSealed(t *testing.T) {
	tp := newTestPolicy(t, ContentRule{Name: "ssn", Pattern: ssnPattern, Action: "refuse"})
	tp.consent(t, "consented@client.example", "2026-01-10", "")
	tp.passphrase(t, "sealed@client.example", "first client passphrase")
	ctx := context.Background()
	msg := "From: therapist@practice.example\r\nTo: sealed@client.example\r\nSubject: s\r\n\r\nSSN 123-45-6789\r\n"
	if _, err := tp.Apply(ctx, Submission{ID: "1", Decisions: tp.decideAll(t, "sealed@client.example", "colleague@practice.example")},
		strings.NewReader(msg), &memSink{}); err != nil {
		t.Fatalf("sealed and colleague: %v", err)
	}
	_, err := tp.Apply(ctx, Submission{ID: "2", Decisions: tp.decideAll(t, "sealed@client.example", "consented@client.example")},
		strings.NewReader(msg), &memSink{})
	var r *Refusal
	if !errors.As(err, &r) || !strings.Contains(r.Reason, "unencrypted to <consented@client.example>") || strings.Contains(r.Reason, "sealed@") {
		t.Fatalf("with a consented client: %v; want the rule's refusal naming only the clear recipient", err)
	}
}

// TestPassphraseChangedBeforeSealing: the passphrase decided on at RCPT
// is read again when the copy is sealed; replaced or removed meanwhile,
// the message is refused and nothing is sealed.
func TestPassphraseChangedBeforeSealing(t *testing.T) {
	for _, change := range []string{"replaced", "removed"} {
		t.Run(change, func(t *testing.T) {
			tp := newTestPolicy(t)
			tp.passphrase(t, "sealed@client.example", "first client passphrase")
			ds := tp.decideAll(t, "sealed@client.example", "colleague@practice.example")
			if change == "replaced" {
				tp.passphrase(t, "sealed@client.example", "another client passphrase")
			} else if _, err := tp.reg.RemovePassphrase(context.Background(), []string{"sealed@client.example"}, "admin"); err != nil {
				t.Fatal(err)
			}
			sink := &memSink{}
			_, err := tp.Apply(context.Background(), Submission{ID: "1", Decisions: ds}, strings.NewReader(sealedMixMessage), sink)
			var r *Refusal
			if !errors.As(err, &r) || !r.Recipient || !strings.Contains(r.Reason, "<sealed@client.example>") ||
				!strings.Contains(r.Reason, "(passphrase "+change+" on 20") || strings.Contains(r.Reason, "client passphrase") {
				t.Fatalf("%v; want a refusal for the recipient saying the passphrase was %s", err, change)
			}
			if len(tp.sealer.calls) != 0 || sink.files["sealed-1"] != nil {
				t.Fatal("a copy was sealed anyway")
			}
		})
	}
}

// TestSealingRefusals: a message too large to seal, or with a part Seal
// cannot decode, is refused for good; any other failure is temporary.
func TestSealingRefusals(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		check func(r *Refusal) bool
	}{
		{"too large", fmt.Errorf("wrapped: %w", sealed.ErrTooLarge), func(r *Refusal) bool {
			return r.TooLarge && strings.Contains(r.Reason, "too large to send as a sealed PDF to <sealed@client.example> (over 1 MB)")
		}},
		{"malformed", &sealed.MalformedError{Reason: "the base64 encoding of its part 2 is damaged"}, func(r *Refusal) bool {
			return r.Malformed && strings.Contains(r.Reason, "damaged: the base64 encoding of its part 2 is damaged")
		}},
		{"other", errors.New("font table unreadable"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTestPolicy(t)
			tp.passphrase(t, "sealed@client.example", "first client passphrase")
			tp.sealer.err = tt.err
			_, err := tp.Apply(context.Background(), Submission{ID: "1", Decisions: tp.decideAll(t, "sealed@client.example")},
				strings.NewReader(sealedMixMessage), &memSink{})
			var r *Refusal
			switch {
			case tt.check == nil && (errors.As(err, &r) || err == nil):
				t.Fatalf("%v; want a temporary error", err)
			case tt.check != nil && (!errors.As(err, &r) || !tt.check(r)):
				t.Fatalf("%#v; want the refusal", err)
			}
		})
	}
}

// TestRecheckSealed: a sealed copy may go only while the passphrase it was
// sealed with is the one on file.
func TestRecheckSealed(t *testing.T) {
	tp := newTestPolicy(t)
	ctx := context.Background()
	first := tp.passphrase(t, "sealed@client.example", "first client passphrase")
	now := tp.now
	if why, err := tp.RecheckSealed(ctx, "sealed@client.example", first.ID, now); why != "" || err != nil {
		t.Fatalf("unchanged: %q %v", why, err)
	}
	second := tp.passphrase(t, "sealed@client.example", "another client passphrase")
	day := second.RecordedAt.In(now.Location()).Format(dateLayout)
	if why, _ := tp.RecheckSealed(ctx, "sealed@client.example", first.ID, now); why != "passphrase replaced on "+day {
		t.Errorf("replaced: %q", why)
	}
	tp.reg.RemovePassphrase(ctx, []string{"sealed@client.example"}, "admin")
	if why, _ := tp.RecheckSealed(ctx, "sealed@client.example", second.ID, now); why != "passphrase removed on "+day {
		t.Errorf("removed: %q", why)
	}
	if why, _ := tp.RecheckSealed(ctx, "never@client.example", 1, now); why != "no passphrase on file" {
		t.Errorf("never set: %q", why)
	}
	tp.reg.Close()
	if _, err := tp.RecheckSealed(ctx, "sealed@client.example", second.ID, now); !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), "sealed@") {
		t.Errorf("registry down: %v; want ErrUnavailable without the address", err)
	}
}

// TestRecheckConsentWithPassphrase: a client in a clear copy on consent
// who has since set a passphrase still has their consent: the copy goes;
// once the consent is revoked it does not, passphrase or not.
func TestRecheckConsentWithPassphrase(t *testing.T) {
	tp := newTestPolicy(t)
	ctx := context.Background()
	tp.consent(t, "carl@client.example", "2026-01-10", "")
	tp.passphrase(t, "carl@client.example", "first client passphrase")
	if w, err := tp.RecheckConsent(ctx, []string{"carl@client.example"}, tp.now); err != nil || len(w) != 0 {
		t.Fatalf("consent holds: %v %v", w, err)
	}
	tp.reg.Revoke(ctx, "carl@client.example", "by phone", "admin")
	if w, _ := tp.RecheckConsent(ctx, []string{"carl@client.example"}, tp.now.Add(time.Minute)); !strings.HasPrefix(w["carl@client.example"], "revoked on ") {
		t.Fatalf("revoked: %v", w)
	}
}
