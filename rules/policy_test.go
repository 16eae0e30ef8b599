package rules

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

// DefaultSSNRule is the rule config.example.toml ships: a US Social
// Security number must not go to a client in clear.
const ssnPattern = `\b(?:00[1-9]|0[1-9]\d|[1-578]\d{2}|6[0-57-9]\d|66[0-57-9])[- ](?:0[1-9]|[1-9]\d)[- ](?:000[1-9]|00[1-9]\d|0[1-9]\d{2}|[1-9]\d{3})\b`

func TestSSNPattern(t *testing.T) {
	re := regexp.MustCompile(ssnPattern)
	for _, s := range []string{"SSN 123-45-6789.", "ssn: 078 05 1120", "(234-56-7890)"} {
		if !re.MatchString(s) {
			t.Errorf("%q not matched", s)
		}
	}
	for _, s := range []string{"call 555-123-4567", "on 2026-11-22", "order 1234-56-789", "000-12-3456", "666-12-3456",
		"912-34-5678", "123-00-4567", "123-45-0000", "12345-6789", "ref 123-456-789", "ZIP 12345-6789", "phone +1 555 123 4567", "a123-45-6789"} {
		if re.MatchString(s) {
			t.Errorf("%q matched", s)
		}
	}
}

type fakeKeys struct {
	mu   sync.Mutex
	keys map[string]KeyLookup
	err  error
}

func (k *fakeKeys) Lookup(ctx context.Context, address string) (KeyLookup, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return KeyLookup{}, k.err
	}
	if l, ok := k.keys[address]; ok {
		return l, nil
	}
	return KeyLookup{Status: KeyNone}, nil
}

// fakeEncrypter stands in for rules/pgp: it records what it was asked and
// writes a recognisable marker instead of ciphertext.
type fakeEncrypter struct {
	mu    sync.Mutex
	calls [][]string
}

func (e *fakeEncrypter) EncryptMIME(ctx context.Context, w io.Writer, msg io.Reader, fprs []string) error {
	b, err := io.ReadAll(msg)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.calls = append(e.calls, fprs)
	e.mu.Unlock()
	fmt.Fprintf(w, "ENCRYPTED TO %s\r\n%s", strings.Join(fprs, ","), b)
	return nil
}

// memSink is a rules.Sink in memory.
type memSink struct{ files map[string]*bytes.Buffer }

func (s *memSink) Create(name string) (io.WriteCloser, error) {
	if s.files == nil {
		s.files = map[string]*bytes.Buffer{}
	}
	if _, ok := s.files[name]; ok {
		return nil, fmt.Errorf("%s exists", name)
	}
	b := &bytes.Buffer{}
	s.files[name] = b
	return nopCloser{b}, nil
}

func (s *memSink) Open(name string) (io.ReadCloser, error) {
	b, ok := s.files[name]
	if !ok {
		return nil, fmt.Errorf("no %s", name)
	}
	return io.NopCloser(bytes.NewReader(b.Bytes())), nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

type testPolicy struct {
	*Policy
	reg    *Registry
	keys   *fakeKeys
	enc    *fakeEncrypter
	sealer *stubSealer
	now    time.Time
}

func newTestPolicy(t testing.TB, rules ...ContentRule) *testPolicy {
	t.Helper()
	reg, err := openRegistryAt(t, filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	tp := &testPolicy{reg: reg, keys: &fakeKeys{keys: map[string]KeyLookup{}}, enc: &fakeEncrypter{}, sealer: &stubSealer{},
		now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.Local)}
	p, err := NewPolicy(PolicyConfig{InternalDomains: []string{"practice.example", "bücher.example"}, Notice: testNotice, Rules: rules,
		Registry: reg, Keys: tp.keys, Encrypter: tp.enc, Sealed: &testSealedSettings, Sealer: tp.sealer.Seal,
		Now: func() time.Time { return tp.now }})
	if err != nil {
		t.Fatal(err)
	}
	tp.Policy = p
	return tp
}

// Apply makes every copy of a message, as the relay does with Prepare and
// EncryptCopies.
func (tp *testPolicy) Apply(ctx context.Context, sub Submission, msg io.Reader, out Sink) (*Result, error) {
	res, err := tp.Prepare(ctx, sub, msg, out)
	if err != nil {
		return nil, err
	}
	if err := tp.EncryptCopies(ctx, out, res); err != nil {
		return nil, err
	}
	return res, nil
}

func (tp *testPolicy) consent(t testing.TB, address, signed, expires string) {
	t.Helper()
	_, err := tp.reg.Add(context.Background(), record.ConsentEvent{Client: "Chart 17", Addresses: []string{address}, Signed: signed,
		Evidence: "Intake form p.3, signed copy in the paper chart", Expires: expires, RecordedBy: "admin"})
	if err != nil {
		t.Fatal(err)
	}
}

func TestDecide(t *testing.T) {
	tp := newTestPolicy(t)
	ctx := context.Background()
	tp.consent(t, "consented@client.example", "2026-01-10", "")
	tp.consent(t, "Case@Client.example", "2026-01-10", "")
	tp.consent(t, "expired@client.example", "2025-01-10", "2026-01-10")
	tp.consent(t, "revoked@client.example", "2026-01-10", "")
	revocation, err := tp.reg.Revoke(ctx, "revoked@client.example", "client asked for encrypted mail only", "admin")
	if err != nil {
		t.Fatal(err)
	}
	tp.consent(t, "oldkey@client.example", "2026-01-10", "")
	tp.keys.keys["keyholder@client.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "ABCD1234"}
	tp.keys.keys["oldkey@client.example"] = KeyLookup{Status: KeyExpired, Detail: "expired on 2026-02-01"}
	tp.keys.keys["revokedkey@client.example"] = KeyLookup{Status: KeyRevoked, Detail: "revoked on 2026-03-01: key compromised"}
	tp.keys.keys["colleague@practice.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "FFFF"}
	tp.consent(t, "keyholder@client.example", "2026-01-10", "")

	tests := []struct {
		rcpt   string
		want   record.Protection
		reason string
	}{
		{"colleague@practice.example", record.Internal, "internal domain practice.example"},
		{"Colleague@PRACTICE.example", record.Internal, ""},
		{"anna@bücher.example", record.Internal, "internal domain xn--bcher-kva.example"},
		{"keyholder@client.example", record.Encrypted, "ABCD1234"},
		{"consented@client.example", record.Consented, "signed 2026-01-10 (Intake form p.3"},
		{"CONSENTED@client.EXAMPLE", record.Consented, ""},
		{"case@client.example", record.Consented, ""},
		{"oldkey@client.example", record.Consented, ""},
		{"consented+tag@client.example", record.Refused, "<consented+tag@client.example> has no passphrase, encryption key or written consent to unencrypted email on file; ask your admin to record one"},
		{"stranger@client.example", record.Refused, "<stranger@client.example> has no passphrase, encryption key or written consent to unencrypted email on file; ask your admin to record one"},
		{"expired@client.example", record.Refused, "The consent of <expired@client.example> to unencrypted email ran out on 2026-01-10, and no passphrase or encryption key is on file; ask your admin"},
		{"revoked@client.example", record.Refused, "<revoked@client.example> withdrew consent to unencrypted email on " + revocation.RecordedAt.Local().Format("2006-01-02") + ", and no passphrase or encryption key is on file; ask your admin"},
		{"revokedkey@client.example", record.Refused, "The encryption key of <revokedkey@client.example> can no longer be used (revoked on 2026-03-01: key compromised), and no passphrase or written consent"},
	}
	for _, tt := range tests {
		d, err := tp.Decide(ctx, "therapist", tt.rcpt)
		if err != nil {
			t.Fatalf("%s: %v", tt.rcpt, err)
		}
		if d.Protection != tt.want || !strings.Contains(d.Reason, tt.reason) {
			t.Errorf("%s: %s %q; want %s %q", tt.rcpt, d.Protection, d.Reason, tt.want, tt.reason)
		}
		// The therapist reads the reason: an admin's command is no use to them.
		if d.Protection == record.Refused && (strings.Contains(d.Reason, "sealpost ") || d.RefusalCode == "") {
			t.Errorf("%s: refused with %q (code %q): names a command, or has no code", tt.rcpt, d.Reason, d.RefusalCode)
		}
		if d.Protection == record.Consented && (d.Consent == nil || d.Consent.Evidence == "") {
			t.Errorf("%s: consented without the consent event", tt.rcpt)
		}
	}

	// Without its data, no decision is made.
	tp.keys.err = errors.New("disk error")
	if _, err := tp.Decide(ctx, "therapist", "consented@client.example"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("keyring down: %v, want ErrUnavailable", err)
	}
	tp.keys.err = nil
	tp.reg.Close()
	if _, err := tp.Decide(ctx, "therapist", "consented@client.example"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("registry down: %v, want ErrUnavailable", err)
	}
	if d, err := tp.Decide(ctx, "therapist", "colleague@practice.example"); err != nil || d.Protection != record.Internal {
		t.Errorf("internal recipients need no registry: %v %v", d.Protection, err)
	}
}

// TestRevocationSeenByRunningRelay: the CLI's handle revokes, the relay's
// handle on the same file refuses at the next decision.
func TestRevocationSeenByRunningRelay(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "registry.db")
	relayReg, err := openRegistryAt(t, path)
	if err != nil {
		t.Fatal(err)
	}
	defer relayReg.Close()
	p, err := NewPolicy(PolicyConfig{Notice: testNotice, Registry: relayReg})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cli, _ := openRegistryAt(t, path)
	cli.Add(ctx, record.ConsentEvent{Addresses: []string{"anna@client.example"}, Signed: "2026-01-02", Evidence: "form", RecordedBy: "admin"})
	if d, _ := p.Decide(ctx, "t", "anna@client.example"); d.Protection != record.Consented {
		t.Fatalf("after add: %s", d.Protection)
	}
	cli.Revoke(ctx, "anna@client.example", "by phone", "admin")
	cli.Close()
	if d, _ := p.Decide(ctx, "t", "anna@client.example"); d.Protection != record.Refused || d.RefusalCode != RefusalConsentRevoked {
		t.Fatalf("after revoke: %s %q", d.Protection, d.Reason)
	}
}

const mixedMessage = "From: Maria <therapist@practice.example>\r\nTo: key@client.example, consented@client.example\r\n" +
	"Cc: colleague@practice.example\r\nBcc: hidden-key@client.example, hidden@client.example\r\nSubject: Session notes\r\n" +
	"Message-ID: <m1@practice.example>\r\n\r\nHello.\r\n"

// TestApplyCopies: one message, recipients with different decisions; each
// gets the right copy and nobody a copy meant for another decision.
func TestApplyCopies(t *testing.T) {
	tp := newTestPolicy(t)
	ctx := context.Background()
	tp.keys.keys["key@client.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "AAAA"}
	tp.keys.keys["hidden-key@client.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "BBBB"}
	tp.consent(t, "consented@client.example", "2026-01-10", "")
	tp.consent(t, "hidden@client.example", "2026-01-10", "")
	var ds []record.Decision
	for _, r := range []string{"key@client.example", "consented@client.example", "colleague@practice.example", "hidden-key@client.example", "hidden@client.example"} {
		d, err := tp.Decide(ctx, "therapist", r)
		if err != nil || d.Protection == record.Refused {
			t.Fatalf("%s: %v %v", r, d.Protection, err)
		}
		ds = append(ds, d)
	}
	sink := &memSink{}
	res, err := tp.Apply(ctx, Submission{ID: "1", Account: "therapist", Sender: "therapist@practice.example", Decisions: ds}, strings.NewReader(mixedMessage), sink)
	if err != nil {
		t.Fatal(err)
	}
	copies := map[string][]string{}
	for _, c := range res.Copies {
		copies[c.Name] = c.Recipients
	}
	want := map[string][]string{
		"sent":  {"consented@client.example", "colleague@practice.example", "hidden@client.example"},
		"enc-1": {"key@client.example"},
		"enc-2": {"hidden-key@client.example"},
	}
	if fmt.Sprint(copies) != fmt.Sprint(want) {
		t.Fatalf("copies %v, want %v", copies, want)
	}
	if fmt.Sprint(tp.enc.calls) != "[[AAAA] [BBBB]]" {
		t.Errorf("encrypted to %v; each Bcc key holder must get a copy of their own", tp.enc.calls)
	}
	for name, b := range sink.files {
		s := b.String()
		if strings.Contains(s, "Bcc:") || strings.Contains(s, "hidden") {
			t.Errorf("%s reveals the Bcc recipients:\n%s", name, s)
		}
		if !strings.Contains(s, "To: key@client.example, consented@client.example\r\n") || !strings.Contains(s, "Cc: colleague@practice.example\r\n") {
			t.Errorf("%s: To and Cc must be the same in every copy:\n%s", name, s)
		}
		if !strings.Contains(s, "Notice of Confidentiality") {
			t.Errorf("%s has no notice", name)
		}
	}
	bcc := map[string]bool{}
	for _, d := range res.Decisions {
		bcc[d.Address] = d.Bcc
	}
	if !bcc["hidden@client.example"] || !bcc["hidden-key@client.example"] || bcc["key@client.example"] || bcc["colleague@practice.example"] {
		t.Errorf("Bcc flags %v", bcc)
	}
}

func TestApplyAlreadyEncrypted(t *testing.T) {
	tp := newTestPolicy(t)
	ctx := context.Background()
	tp.keys.keys["key@client.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "AAAA"}
	d, _ := tp.Decide(ctx, "therapist", "key@client.example")
	msg := "From: therapist@practice.example\r\nTo: key@client.example\r\nMIME-Version: 1.0\r\n" + pgpMIME("", octetPart(encryptedTo(t, "notes")), "")
	sink := &memSink{}
	res, err := tp.Apply(ctx, Submission{ID: "1", Decisions: []record.Decision{d}}, strings.NewReader(msg), sink)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Copies) != 1 || res.Copies[0].Name != "sent" || res.Plain != "sent" || len(tp.enc.calls) != 0 {
		t.Fatalf("copies %+v, encrypt calls %v: an already encrypted message goes as it is", res.Copies, tp.enc.calls)
	}
	if sink.files["sent"].String() != msg {
		t.Fatal("the client's encrypted message was altered")
	}
	if r := res.Decisions[0].Reason; !strings.Contains(r, "already encrypted by the sender's mail program (PGP/MIME)") || !strings.Contains(r, "AAAA") {
		t.Errorf("the record says %q", r)
	}
}

// TestConsentWithdrawnBeforeData: a consent revoked between RCPT and the
// end of DATA refuses the message; nothing goes out in clear.
func TestConsentWithdrawnBeforeData(t *testing.T) {
	tp := newTestPolicy(t)
	ctx := context.Background()
	tp.consent(t, "carl@client.example", "2026-01-10", "")
	d, err := tp.Decide(ctx, "therapist", "carl@client.example")
	if err != nil || d.Protection != record.Consented {
		t.Fatalf("decision %+v, %v", d, err)
	}
	if _, err := tp.reg.Revoke(ctx, "carl@client.example", "by phone", "admin"); err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	_, err = tp.Apply(ctx, Submission{ID: "1", Decisions: []record.Decision{d}}, strings.NewReader("Subject: s\r\n\r\nhi\r\n"), sink)
	var r *Refusal
	if !errors.As(err, &r) || !strings.Contains(r.Reason, "<carl@client.example> withdrew consent to unencrypted email") || !r.Recipient || r.Code != RefusalConsentRevoked {
		t.Fatalf("Apply after the revocation: %v; want a refusal for the recipient, naming it", err)
	}
}

// TestAlreadyEncryptedOnlyWhenItIs: a message goes to a key holder as the
// sender's client made it only when it is encrypted (encryptedVariants);
// anything that only claims to be is encrypted by sealpost like any other
// message, with the notice, and recorded as sealpost's encryption.
func TestAlreadyEncryptedOnlyWhenItIs(t *testing.T) {
	const hdr = "From: therapist@practice.example\r\nTo: key@client.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
	variants := encryptedVariants(t)
	variants = append(variants, []struct {
		name  string
		msg   string
		valid bool
	}{
		{"text quoting an armor line", "\r\nYour reply will start with\r\n-----BEGIN PGP MESSAGE-----\r\nand your diagnosis follows.\r\n", false},
		{"multipart/encrypted of no known protocol", "Content-Type: multipart/encrypted; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nclear\r\n--b--\r\n", false},
		{"S/MIME signed, opaque", smimeBody("signed-data", cmsFixture(t, "signed.p7m")), false},
	}...)
	tp := newTestPolicy(t)
	ctx := context.Background()
	tp.keys.keys["key@client.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "AAAA"}
	d, _ := tp.Decide(ctx, "therapist", "key@client.example")
	for _, tt := range variants {
		t.Run(tt.name, func(t *testing.T) {
			tp.enc.calls = nil
			sink := &memSink{}
			msg := hdr + tt.msg
			res, err := tp.Apply(ctx, Submission{ID: "1", Decisions: []record.Decision{d}}, strings.NewReader(msg), sink)
			var ref *Refusal
			if errors.As(err, &ref) && ref.Malformed && strings.Contains(tt.name, "no closing boundary") {
				return // like any clear message with a part cut off
			}
			if err != nil {
				t.Fatal(err)
			}
			sentAsItIs := len(res.Copies) == 1 && res.Copies[0].Name == "sent" && len(tp.enc.calls) == 0
			if sentAsItIs != tt.valid {
				t.Fatalf("copies %+v, encrypt calls %v; want sent as it is: %v", res.Copies, tp.enc.calls, tt.valid)
			}
			plain := sink.files[res.Plain].String()
			reason := res.Decisions[0].Reason
			if tt.valid {
				if plain != msg || !strings.Contains(reason, "already encrypted") {
					t.Fatalf("passed on altered, or recorded as %q", reason)
				}
				return
			}
			// The record holds what the recipient reads: the message with
			// the notice, which sealpost encrypted.
			noticed := strings.Contains(plain, "Notice of Confidentiality")
			if !noticed { // in base64 text
				for _, l := range goLeaves(t, []byte(plain)) {
					noticed = noticed || strings.Contains(l.Text, "Notice of Confidentiality")
				}
			}
			if !noticed || !strings.Contains(reason, "encrypted to OpenPGP key AAAA") {
				t.Fatalf("plain copy %q without the notice, or recorded as %q:\n%s", res.Plain, reason, plain)
			}
			for _, line := range strings.Split(plain, "\r\n") {
				if len(line) > 998 {
					t.Fatalf("a line of %d octets in the plain copy", len(line))
				}
			}
			if enc := sink.files["enc-1"].String(); !strings.HasSuffix(enc, plain) {
				t.Fatalf("the encrypted copy was not made from the plain copy with the notice:\n%s", enc)
			}
		})
	}
}

// TestClaimedEncryptionWithLongLine: a claimed encryption with a line over
// 998 octets cannot be passed on as it is. PGP/MIME is read as the
// multipart it is and the part re-encoded; an S/MIME body is one piece that
// cannot be re-encoded, and is refused as a signed part with such a line is.
func TestClaimedEncryptionWithLongLine(t *testing.T) {
	long := strings.Repeat("clear ", 300)
	for _, tt := range []struct {
		name, msg string
		refused   bool
	}{
		{"PGP/MIME", pgpMIME("", "Content-Type: text/plain\r\n\r\n"+long+"\r\n", ""), false},
		{"S/MIME", "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\n" + long + "\r\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTestPolicy(t)
			ctx := context.Background()
			tp.keys.keys["key@client.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "AAAA"}
			d, _ := tp.Decide(ctx, "therapist", "key@client.example")
			msg := "From: therapist@practice.example\r\nTo: key@client.example\r\nMIME-Version: 1.0\r\n" + tt.msg
			sink := &memSink{}
			res, err := tp.Apply(ctx, Submission{ID: "1", Decisions: []record.Decision{d}}, strings.NewReader(msg), sink)
			if tt.refused {
				if !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("got %v, want ErrLineTooLong", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(sink.files[res.Plain].String(), "\r\n") {
				if len(line) > 998 {
					t.Fatalf("a line of %d octets", len(line))
				}
			}
			if len(tp.enc.calls) != 1 {
				t.Fatal("not encrypted by sealpost")
			}
		})
	}
}

// TestClaimedEncryptionToClients: a message that only claims to be
// encrypted, to a consented client, gets the notice and the content rules
// like any clear message; a really encrypted one is not read.
func TestClaimedEncryptionToClients(t *testing.T) {
	rule := ContentRule{Name: "us-ssn", Pattern: ssnPattern, On: "any", Action: "refuse"}
	const hdr = "From: therapist@practice.example\r\nTo: consented@client.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
	sk, seipd := realPackets(t)
	ssn := "Your SSN 123-45-6789 is on file."
	tests := []struct {
		name    string
		msg     string
		refused bool
	}{
		{"fake PGP/MIME, text/plain part", pgpMIME("", "Content-Type: text/plain\r\n\r\n"+ssn+"\r\n", ""), true},
		{"fake PGP/MIME, octet-stream in clear", pgpMIME("", octetPart(ssn+"\r\n"), ""), true},
		{"fake PGP/MIME, clear text after the armor", pgpMIME("", octetPart(armorBytes(t, sk, seipd)+ssn+"\r\n"), ""), true},
		{"fake S/MIME, clear body", smimeBody("enveloped-data", []byte(ssn)), true},
		{"fake S/MIME, base64 body without smime-type", strings.Replace(smimeBody("enveloped-data", []byte(ssn)), "smime-type=enveloped-data; ", "", 1), true},
		{"fake S/MIME, opaque signed data", smimeBody("signed-data", append(cmsFixture(t, "signed.p7m"), ssn...)), true},
		{"fake inline, text after the block", "\r\n" + armorBytes(t, sk, seipd) + ssn + "\r\n", true},
		{"fake PGP/MIME inside a mixed message", "Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--m\r\n" +
			pgpMIME("", octetPart(ssn+"\r\n"), "") + "\r\n--m--\r\n", true},
		{"real PGP/MIME", pgpMIME("", octetPart(encryptedTo(t, ssn)), ""), false},
		{"real S/MIME", smimeBody("enveloped-data", cmsFixture(t, "enveloped-ber.p7m")), false},
		{"real PGP/MIME inside a mixed message", "Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--m\r\n" +
			pgpMIME("", octetPart(encryptedTo(t, ssn)), "") + "\r\n--m--\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTestPolicy(t, rule)
			ctx := context.Background()
			tp.consent(t, "consented@client.example", "2026-01-10", "")
			d, _ := tp.Decide(ctx, "therapist", "consented@client.example")
			sink := &memSink{}
			res, err := tp.Apply(ctx, Submission{ID: "1", Decisions: []record.Decision{d}}, strings.NewReader(hdr+tt.msg), sink)
			var ref *Refusal
			if tt.refused {
				if !errors.As(err, &ref) || len(ref.Fired) != 1 || ref.Fired[0].Rule != "us-ssn" {
					t.Fatalf("got %v, want the SSN rule to refuse it", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if res.Plain != "sent" {
				t.Fatalf("a really encrypted message was transformed again into %q", res.Plain)
			}
		})
	}
}

func TestContentRules(t *testing.T) {
	rule := ContentRule{Name: "us-ssn", Pattern: ssnPattern, On: "any", Action: "refuse",
		Reply: "This message contains what looks like a US Social Security number and may not go to a client in unencrypted email"}
	tp := newTestPolicy(t, rule, ContentRule{Name: "diagnosis-subject", Pattern: `(?i)diagnos`, On: "subject", Action: "require_encryption"})
	ctx := context.Background()
	tp.consent(t, "consented@client.example", "2026-01-10", "")
	tp.keys.keys["key@client.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "AAAA"}
	decide := func(r string) record.Decision { d, _ := tp.Decide(ctx, "therapist", r); return d }
	tests := []struct {
		name   string
		rcpts  []string
		msg    string
		refuse string
	}{
		{"SSN in clear to a client", []string{"consented@client.example"}, "Subject: billing\r\n\r\nYour SSN 123-45-6789 is on file.\r\n", "looks like a US Social Security number"},
		{"SSN in base64 text", []string{"consented@client.example"}, "Subject: b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nU1NOIDEyMy00NS02Nzg5\r\n", "us-ssn"},
		{"SSN in the HTML part", []string{"consented@client.example"}, "Subject: b\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nsee html\r\n--a\r\nContent-Type: text/html\r\n\r\n<p>SSN 123-45-6789</p>\r\n--a--\r\n", "us-ssn"},
		{"SSN to a colleague", []string{"colleague@practice.example"}, "Subject: billing\r\n\r\nSSN 123-45-6789\r\n", ""},
		{"SSN encrypted to a key holder", []string{"key@client.example"}, "Subject: billing\r\n\r\nSSN 123-45-6789\r\n", ""},
		{"diagnosis in the subject, in clear", []string{"consented@client.example", "key@client.example"}, "Subject: Your diagnosis\r\n\r\nhi\r\n", "may only be sent encrypted"},
		{"diagnosis only in the body", []string{"consented@client.example"}, "Subject: hello\r\n\r\nabout the diagnosis\r\n", ""},
		{"a phone number", []string{"consented@client.example"}, "Subject: call me\r\n\r\n555-123-4567\r\n", ""},
		// Wherever the text is, the rules read it.
		{"SSN in a signed message", []string{"consented@client.example"}, "Subject: b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha256; boundary=s\r\n\r\n--s\r\nContent-Type: text/plain\r\n\r\nSSN 123-45-6789\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\nxx\r\n-----END PGP SIGNATURE-----\r\n--s--\r\n", "us-ssn"},
		{"SSN in an inline-signed text", []string{"consented@client.example"}, "Subject: b\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nSSN 123-45-6789\r\n-----BEGIN PGP SIGNATURE-----\r\nxx\r\n-----END PGP SIGNATURE-----\r\n", "us-ssn"},
		{"SSN in a second text part", []string{"consented@client.example"}, "Subject: b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nsee the notes\r\n--m\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--m\r\nContent-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment; filename=notes.txt\r\nContent-Transfer-Encoding: base64\r\n\r\nU1NOIDEyMy00NS02Nzg5\r\n--m--\r\n", "us-ssn"},
		{"SSN in a text attachment alone", []string{"consented@client.example"}, "Subject: b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=n.txt\r\n\r\nSSN 123-45-6789\r\n", "us-ssn"},
		{"SSN under a Content-Type that cannot be parsed", []string{"consented@client.example"}, "Subject: b\r\nContent-Type: text/plain; charset=\"utf-8\r\n\r\nSSN 123-45-6789\r\n", "us-ssn"},
		{"SSN in UTF-16 HTML", []string{"consented@client.example"}, "Subject: b\r\nContent-Type: text/html; charset=utf-16le\r\nContent-Transfer-Encoding: base64\r\n\r\n" + utf16Base64("<p>SSN 123-45-6789</p>") + "\r\n", "us-ssn"},
		{"SSN in a subject beside a word in an unknown charset", []string{"consented@client.example"}, "Subject: =?utf-8?B?U1NOIDEyMy00NS02Nzg5?= =?x-unknown?Q?x?=\r\n\r\nhi\r\n", "us-ssn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ds []record.Decision
			for _, r := range tt.rcpts {
				ds = append(ds, decide(r))
			}
			msg := "From: therapist@practice.example\r\nTo: " + strings.Join(tt.rcpts, ", ") + "\r\n" + tt.msg
			_, err := tp.Apply(ctx, Submission{ID: "1", Decisions: ds}, strings.NewReader(msg), &memSink{})
			var ref *Refusal
			if tt.refuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.As(err, &ref) || !strings.Contains(ref.Reason, tt.refuse) || ref.Code != RefusalContentRule {
				t.Fatalf("got %v, want a content rule's refusal saying %q", err, tt.refuse)
			}
			if len(ref.Fired) != 1 {
				t.Errorf("fired %v", ref.Fired)
			}
		})
	}
}

// TestContentRulesSkipTheNotice: the rules read what the therapist wrote,
// not the practice's notice that sealpost appended (in plain text, HTML, or
// both parts of an alternative).
func TestContentRulesSkipTheNotice(t *testing.T) {
	rule := ContentRule{Name: "phi-words", Pattern: `(?i)protected health information`, On: "body", Action: "refuse"}
	tp := newTestPolicy(t, rule)
	ctx := context.Background()
	tp.consent(t, "consented@client.example", "2026-01-10", "")
	d, _ := tp.Decide(ctx, "therapist", "consented@client.example")
	for _, tt := range []struct {
		name, body string
		refused    bool
	}{
		{"plain", "Subject: s\r\n\r\nSee you Tuesday.\r\n", false},
		{"alternative", "Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nSee you.\r\n--a\r\nContent-Type: text/html\r\n\r\n<html><body><p>See you.</p></body></html>\r\n--a--\r\n", false},
		{"the words in the therapist's own text", "Subject: s\r\n\r\nYour protected health information is attached.\r\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := "From: therapist@practice.example\r\nTo: consented@client.example\r\n" + tt.body
			_, err := tp.Apply(ctx, Submission{ID: "1", Decisions: []record.Decision{d}}, strings.NewReader(msg), &memSink{})
			if refused := err != nil; refused != tt.refused {
				t.Fatalf("refused: %v (%v), want %v", refused, err, tt.refused)
			}
		})
	}
}

func utf16Base64(s string) string {
	var b []byte
	for _, c := range []byte(s) {
		b = append(b, c, 0)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// BenchmarkDecide: a RCPT decision with 10,000 clients in the registry
// (goal: under 100 µs).
func BenchmarkDecide(b *testing.B) {
	tp := newTestPolicy(b)
	ctx := context.Background()
	var csv strings.Builder
	csv.WriteString("address,name,signed,evidence,expires\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&csv, "client%d@client.example,Chart %d,2026-01-10,intake form,\n", i, i)
	}
	if n, err := tp.reg.Import(ctx, strings.NewReader(csv.String()), "bench"); err != nil || n != 10000 {
		b.Fatal(n, err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := tp.Decide(ctx, "therapist", fmt.Sprintf("client%d@client.example", i%10000))
		if err != nil || d.Protection != record.Consented {
			b.Fatal(d.Protection, err)
		}
	}
}

// TestMalformedIsPermanent: a message whose own structure is broken is
// refused as damaged (the relay answers 554 5.6.0), whoever it goes to;
// a failure to read the message or to write a copy is not its fault and
// stays an error the relay answers with 4xx.
func TestMalformedIsPermanent(t *testing.T) {
	const hdr = "From: therapist@practice.example\r\nTo: r@x.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
	mixed := "Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
	tests := []struct{ name, msg, says string }{
		{"no closing boundary", mixed, "closing MIME boundary is missing"},
		{"no closing boundary after an attachment", mixed + "--m\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n", "closing MIME boundary is missing"},
		{"no closing boundary of an inner part", "Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nhi\r\n--m--\r\n", "closing MIME boundary is missing"},
		{"a wrong boundary", "Content-Type: multipart/mixed; boundary=m\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n", "cannot be told apart"},
		{"no boundary", "Content-Type: multipart/mixed\r\n\r\nhello\r\n", "no boundary"},
		{"damaged base64 text", "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n", "base64 encoding is damaged"},
		{"cut-off base64 text", "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nU1NO\r\nIDE\r\n", "base64"},
		{"damaged HTML", "Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%%\r\n", "encoding is damaged"},
		{"a claimed encryption cut off", strings.TrimSuffix(pgpMIME("", octetPart("x\r\n"), ""), "--b1--\r\n"), "closing MIME boundary is missing"},
	}
	mp := newTestPolicy(t, ContentRule{Name: "us-ssn", Pattern: ssnPattern, Action: "refuse"})
	ctx := context.Background()
	mp.keys.keys["key@client.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "AAAA"}
	mp.consent(t, "consented@client.example", "2026-01-10", "")
	for _, tt := range tests {
		for _, who := range []string{"colleague@practice.example", "key@client.example", "consented@client.example"} {
			t.Run(tt.name+" to "+who, func(t *testing.T) {
				d, _ := mp.Decide(ctx, "therapist", who)
				_, err := mp.Apply(ctx, Submission{ID: "1", Decisions: []record.Decision{d}}, strings.NewReader(hdr+tt.msg), &memSink{})
				var ref *Refusal
				if !errors.As(err, &ref) || !ref.Malformed || !strings.Contains(ref.Reason, tt.says) || ref.Code != RefusalMalformed {
					t.Fatalf("got %v, want refused as damaged, saying %q", err, tt.says)
				}
				if strings.Contains(ref.Reason, "EOF") || strings.Contains(ref.Reason, "multipart:") || strings.Contains(ref.Reason, "illegal") {
					t.Errorf("the reply carries a library's words: %s", ref.Reason)
				}
			})
		}
	}

	// Not the message's fault: no Refusal, the cause kept for the relay.
	tp := mp
	d, _ := tp.Decide(ctx, "therapist", "key@client.example")
	errNet := errors.New("connection reset")
	for name, run := range map[string]func() error{
		"the connection fails mid-part": func() error {
			r := io.MultiReader(strings.NewReader(hdr+mixed), &failingReader{err: errNet})
			_, err := tp.Apply(ctx, Submission{ID: "1", Decisions: []record.Decision{d}}, r, &memSink{})
			return err
		},
		"the copy cannot be written": func() error {
			_, err := tp.Apply(ctx, Submission{ID: "1", Decisions: []record.Decision{d}}, strings.NewReader(hdr+mixed+"--m--\r\n"), &failingSink{failWrite: errNet})
			return err
		},
		"the claimed encryption cannot be read back": func() error {
			msg := hdr + pgpMIME("", octetPart("clear\r\n"), "")
			_, err := tp.Apply(ctx, Submission{ID: "1", Decisions: []record.Decision{d}}, strings.NewReader(msg), &failingSink{failRead: errNet})
			return err
		},
	} {
		err := run()
		var ref *Refusal
		if errors.As(err, &ref) || !errors.Is(err, errNet) {
			t.Errorf("%s: got %v, want the cause, not a refusal", name, err)
		}
	}
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

// failingSink fails writes, or reads of what it holds, with an error of the disk's.
type failingSink struct {
	memSink
	failWrite, failRead error
}

func (s *failingSink) Create(name string) (io.WriteCloser, error) {
	w, err := s.memSink.Create(name)
	if err != nil || s.failWrite == nil {
		return w, err
	}
	return nopCloser{failingWriter{s.failWrite}}, nil
}

func (s *failingSink) Open(name string) (io.ReadCloser, error) {
	if s.failRead != nil {
		return io.NopCloser(io.MultiReader(strings.NewReader("From: a"), &failingReader{err: s.failRead})), nil
	}
	return s.memSink.Open(name)
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }
