package rules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules/sealed"
)

// PolicyConfig is what NewPolicy needs.
type PolicyConfig struct {
	InternalDomains []string
	Notice          string
	Rules           []ContentRule
	Registry        Consents  // the consent registry (*Registry)
	Keys            Keys      // nil: nobody has a key
	Encrypter       Encrypter // nil: nothing can be encrypted
	// Sealed are the texts around sealed PDFs; nil: nothing is sealed,
	// and a passphrase on file is not used.
	Sealed *SealedSettings
	// Sealer makes sealed copies; nil: sealed.Seal.
	Sealer Sealer
	Now    func() time.Time
}

// Policy decides per recipient and transforms messages. Its settings can be
// replaced while the relay runs (Reload), e.g. on SIGHUP.
type Policy struct {
	cfg       atomic.Pointer[policySettings]
	sealed    atomic.Pointer[sealedTexts] // nil: sealing is off
	registry  Consents
	keys      Keys
	encrypter Encrypter
	sealer    Sealer
	now       func() time.Time
}

// NewPolicy checks the configuration and returns a policy.
func NewPolicy(cfg PolicyConfig) (*Policy, error) {
	if cfg.Registry == nil {
		return nil, errors.New("policy: no consent registry")
	}
	if (cfg.Keys == nil) != (cfg.Encrypter == nil) {
		return nil, errors.New("policy: keys and encryption go together")
	}
	p := &Policy{registry: cfg.Registry, keys: cfg.Keys, encrypter: cfg.Encrypter, sealer: cfg.Sealer, now: cfg.Now}
	if p.now == nil {
		p.now = time.Now
	}
	if p.sealer == nil {
		p.sealer = sealed.Seal
	}
	if err := p.Reload(cfg.InternalDomains, cfg.Notice, cfg.Rules); err != nil {
		return nil, err
	}
	if cfg.Sealed != nil {
		if err := p.SetSealed(*cfg.Sealed); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Reload replaces the internal domains, the notice and the content rules;
// messages already in progress finish with the settings they started with.
// The settings are checked as CheckSettings does; the error names the first
// problem.
func (p *Policy) Reload(internalDomains []string, notice string, rules []ContentRule) error {
	s, problems := newPolicySettings(internalDomains, notice, rules)
	if len(problems) > 0 {
		return fmt.Errorf("policy: %s", problems[0])
	}
	p.cfg.Store(s)
	return nil
}

// isInternal says whether a normalised address is in one of the internal
// domains (as configured now: they follow Reload).
func (p *Policy) isInternal(address string) bool {
	return p.cfg.Load().internal[addr.DomainOf(address)]
}

// Decide returns the decision for one recipient, in the order of ARCHITECTURE.md:
// internal domain, usable key, passphrase on file (sealed, unless the
// client's consent prefers clear email), consent on file, else refused.
// An error means a decision could not be made (it wraps ErrUnavailable).
func (p *Policy) Decide(ctx context.Context, account, recipient string) (record.Decision, error) {
	d, _, err := p.decide(ctx, recipient, p.now())
	return d, err
}

// decide is every decision about a recipient, at RCPT and again before
// delivery (RecheckConsent), so that the two ask in one order. It returns
// the consent standing too when it was asked (not for colleagues and key
// holders). A recipient whose address cannot be read is refused with no
// Address.
func (p *Policy) decide(ctx context.Context, recipient string, now time.Time) (record.Decision, ConsentStatus, error) {
	n, err := addr.Normalize(recipient)
	if err != nil {
		return record.Decision{Recipient: recipient, Protection: record.Refused,
			Reason: fmt.Sprintf("<%s>: not a valid address", recipient)}, ConsentStatus{}, nil
	}
	d := record.Decision{Recipient: recipient, Address: n}
	if p.isInternal(n) {
		d.Protection, d.Reason = record.Internal, "internal domain "+addr.DomainOf(n)
		return d, ConsentStatus{}, nil
	}
	var key KeyLookup
	if p.keys != nil {
		key, err = p.keys.Lookup(ctx, n)
		if err != nil {
			return d, ConsentStatus{}, fmt.Errorf("keyring: %w: %w", ErrUnavailable, err)
		}
		if key.Status == KeyUsable {
			d.Protection, d.KeyFingerprint = record.Encrypted, key.Fingerprint
			d.Reason = "encrypted to OpenPGP key " + key.Fingerprint
			return d, ConsentStatus{}, nil
		}
	}
	st, err := p.registry.Current(ctx, n, now)
	if err != nil {
		return d, st, err
	}
	prefersClear := st.State == ConsentActive && st.Given.Prefer == record.PreferClear
	if st.Passphrase != nil && !prefersClear && p.sealed.Load() != nil {
		return sealedDecision(d, st.Passphrase, now), st, nil
	}
	if st.State == ConsentActive {
		ev := *st.Given
		d.Protection, d.Consent = record.Consented, &ev
		d.Reason = fmt.Sprintf("consent to unencrypted email signed %s (%s)", ev.Signed, ev.Evidence)
		if prefersClear && st.Passphrase != nil {
			d.Reason += "; the client asked for unencrypted email although a passphrase for sealed PDFs is on file"
		}
		return d, st, nil
	}
	d.Protection, d.Reason = record.Refused, refusalReason(n, st, key, now)
	return d, st, nil
}

// refusalReason is the one sentence a therapist reads in the mail client:
// the address, why, and what to do.
func refusalReason(address string, st ConsentStatus, key KeyLookup, now time.Time) string {
	keyPart := "no OpenPGP key"
	switch key.Status {
	case KeyExpired:
		keyPart = "their OpenPGP key has expired"
	case KeyRevoked:
		keyPart = "their OpenPGP key was revoked"
	case KeyUnusable:
		keyPart = "their OpenPGP key cannot encrypt"
	}
	if key.Detail != "" && key.Status != KeyNone && key.Status != "" {
		keyPart += " (" + key.Detail + ")"
	}
	switch st.State {
	case ConsentRevoked:
		return fmt.Sprintf("<%s>: consent to unencrypted email was revoked on %s and %s; import a current key (sealpost keys import), record a passphrase for sealed PDFs (sealpost consent passphrase) or record a new consent (sealpost consent add)",
			address, st.Revoked.RecordedAt.In(now.Location()).Format(dateLayout), keyPart)
	case ConsentExpired:
		return fmt.Sprintf("<%s>: consent to unencrypted email expired on %s and %s; record a renewed consent (sealpost consent add), a passphrase for sealed PDFs (sealpost consent passphrase) or import a current key (sealpost keys import)",
			address, st.Given.Expires, keyPart)
	}
	if key.Status != "" && key.Status != KeyNone && key.Status != KeyUsable {
		return fmt.Sprintf("<%s>: %s and there is no consent on file for unencrypted email; import a current key (sealpost keys import), record a passphrase for sealed PDFs (sealpost consent passphrase) or record the client's consent (sealpost consent add)",
			address, keyPart)
	}
	return fmt.Sprintf("<%s>: no consent on file for unencrypted email and no OpenPGP key; record a passphrase for sealed PDFs (sealpost consent passphrase) or the client's consent (sealpost consent add), or import their key (sealpost keys import)",
		address)
}

// Prepare makes the outgoing copies of an accepted message, but for the
// encrypted and sealed ones: the plain copy (notice added, Bcc removed)
// for internal and consented recipients and for the archive is written,
// and every copy, with its recipients, named in the result. EncryptCopies
// then writes the encrypted copies for key holders: one for those in To
// and Cc, and one of its own for each Bcc recipient, so nobody can read
// another recipient's key ID from the message; and a sealed copy for each
// sealed recipient, whose passphrase is theirs alone. In between the plain
// copy may be read (the relay archives it meanwhile).
//
// The content rules apply to what goes to a client in clear: encrypted
// and sealed copies are readable only by their recipient, so the rules
// are not run for them.
func (p *Policy) Prepare(ctx context.Context, sub Submission, msg io.Reader, out Sink) (*Result, error) {
	s := p.cfg.Load()
	clearToClient := false
	for _, d := range sub.Decisions {
		if d.Protection == record.Consented {
			clearToClient = true
			// Asked again: the consent may have been revoked, or run out,
			// since RCPT (a slow DATA, a message held by the client).
			st, err := p.registry.Current(ctx, d.Address, p.now())
			if err != nil {
				return nil, err
			}
			if st.State != ConsentActive {
				return nil, &Refusal{Reason: "Message refused: " + refusalReason(d.Address, st, KeyLookup{}, p.now()) + "; nothing was sent", Recipient: true}
			}
		}
		if d.Protection == record.Refused || d.Protection == "" {
			return nil, fmt.Errorf("policy: recipient without a decision in submission %s", sub.ID)
		}
		if d.Protection == record.Encrypted && p.encrypter == nil {
			return nil, fmt.Errorf("policy: %w: an encrypted recipient but no encryption configured", ErrUnavailable)
		}
		if d.Protection == record.Sealed && (d.Consent == nil || p.sealed.Load() == nil) {
			return nil, fmt.Errorf("policy: %w: a sealed recipient without its passphrase event, or sealing is off", ErrUnavailable)
		}
	}
	tr, plain, passedAs, err := s.writePlain(msg, out)
	if err != nil {
		return nil, err
	}

	res := &Result{Plain: plain, Decisions: append([]record.Decision(nil), sub.Decisions...)}
	markBcc(tr.header, res.Decisions)

	if clearToClient && len(s.rules) > 0 {
		if err := s.checkContent(out, plain, res); err != nil {
			return nil, err
		}
	}
	nameCopies(res, passedAs)
	return res, nil
}

// nameCopies puts every recipient into one copy: the plain one, an
// encrypted one, or a sealed one of their own.
func nameCopies(res *Result, passedAs string) {
	clear := Copy{Name: res.Plain}
	var toCc, bcc []record.Decision
	for i, d := range res.Decisions {
		switch {
		case d.Protection == record.Sealed:
			name := SealedCopyName(len(res.toSeal) + 1)
			res.toSeal = append(res.toSeal, sealJob{name: name, decision: i, eventID: d.Consent.ID})
		case d.Protection != record.Encrypted || passedAs != "":
			// Mail the client certainly encrypted goes to key holders as it is.
			if d.Protection == record.Encrypted {
				res.Decisions[i].Reason = fmt.Sprintf("already encrypted by the sender's mail program (%s), passed on as it is; the recipient's OpenPGP key is %s",
					passedAs, d.KeyFingerprint)
			}
			clear.Recipients = append(clear.Recipients, d.Recipient)
			if clear.Protection == "" || d.Protection == record.Consented {
				clear.Protection = d.Protection
			}
		case d.Bcc:
			bcc = append(bcc, d)
		default:
			toCc = append(toCc, d)
		}
	}
	if len(clear.Recipients) > 0 {
		res.Copies = append(res.Copies, clear)
	}
	groups := [][]record.Decision{}
	if len(toCc) > 0 {
		groups = append(groups, toCc)
	}
	for _, d := range bcc {
		groups = append(groups, []record.Decision{d})
	}
	for i, g := range groups {
		name := EncryptedCopyName(i + 1)
		c := Copy{Name: name, Protection: record.Encrypted}
		var fprs []string
		for _, d := range g {
			c.Recipients = append(c.Recipients, d.Recipient)
			fprs = append(fprs, d.KeyFingerprint)
		}
		res.Copies = append(res.Copies, c)
		res.toEncrypt = append(res.toEncrypt, encryptJob{name: name, fingerprints: fprs})
	}
	for _, j := range res.toSeal {
		res.Copies = append(res.Copies, Copy{Name: j.name, Recipients: []string{res.Decisions[j.decision].Recipient},
			Protection: record.Sealed, SealedWith: j.eventID})
	}
}

// EncryptCopies writes the encrypted and sealed copies Prepare named, and
// fills in each sealed recipient's PDF (Result.Sealed, and the hash in
// their decision). A sealed recipient's passphrase is read from the
// registry now: when it is no longer the one decided on at RCPT, or the
// message is too large to seal or cannot be decoded, the message is
// refused (a *Refusal) and nothing is sent to anybody.
func (p *Policy) EncryptCopies(ctx context.Context, out Sink, res *Result) error {
	for _, j := range res.toEncrypt {
		if err := p.encryptCopy(ctx, out, res.Plain, j.name, j.fingerprints); err != nil {
			return err
		}
	}
	res.toEncrypt = nil
	return p.sealCopies(ctx, out, res)
}

func (p *Policy) encryptCopy(ctx context.Context, out Sink, plainName, name string, fprs []string) error {
	plain, err := out.Open(plainName)
	if err != nil {
		return err
	}
	defer plain.Close()
	w, err := out.Create(name)
	if err != nil {
		return err
	}
	err = p.encrypter.EncryptMIME(ctx, w, plain, fprs)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("encrypt copy: %w", err)
	}
	return nil
}

// markBcc flags recipients who are in neither To nor Cc.
func markBcc(h textproto.Header, ds []record.Decision) {
	mh := mail.Header{Header: message.Header{Header: h}}
	visible := map[string]bool{}
	for _, k := range []string{"To", "Cc"} {
		list, _ := mh.AddressList(k)
		for _, a := range list {
			if n, err := addr.Normalize(a.Address); err == nil {
				visible[n] = true
			}
		}
	}
	for i := range ds {
		ds[i].Bcc = !visible[ds[i].Address]
	}
}

// checkContent runs the content rules over the plain copy of a message
// that goes to a client in clear (contentScan says what they read). A
// refuse rule refuses it; a require_encryption rule refuses it because it
// would go out in clear. The first rule in configured order that fires is
// the one the therapist is told about.
func (s *policySettings) checkContent(out Sink, plain string, res *Result) error {
	f, err := out.Open(plain)
	if err != nil {
		return err
	}
	defer f.Close()
	src := &recordingReader{r: f}
	scan := newContentScan(s.rules, s.notice)
	if err := scan.scan(src); err != nil {
		switch {
		case src.err != nil:
			return fmt.Errorf("read the plain copy: %w", src.err)
		case errors.Is(err, errTooMuchToScan):
			return &Refusal{Reason: fmt.Sprintf("Message refused: it holds more than sealpost can check against the content rules (%d MiB of text, %d parts, %d levels); send it encrypted; nothing was sent",
				maxScannedText>>20, maxScannedParts, maxScannedDepth)}
		}
		return malformed(err)
	}
	r, where := scan.fired()
	if r == nil {
		return nil
	}
	var clients []string
	for _, d := range res.Decisions {
		if d.Protection == record.Consented {
			clients = append(clients, d.Address)
		}
	}
	hit := record.RuleHit{Rule: r.Name, Action: r.Action, Where: where}
	reply := r.Reply
	if reply == "" {
		switch r.Action {
		case "refuse":
			reply = fmt.Sprintf("Message refused by rule %q: its %s must not go out in unencrypted email", r.Name, where)
		default:
			reply = fmt.Sprintf("Message refused by rule %q: its %s may only be sent encrypted", r.Name, where)
		}
	}
	reply = fmt.Sprintf("%s (rule %s; in clear to %s); nothing was sent", strings.TrimRight(reply, ". "), r.Name, strings.Join(angle(clients), ", "))
	return &Refusal{Reason: reply, Fired: []record.RuleHit{hit}}
}

func angle(as []string) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = "<" + a + ">"
	}
	return out
}
