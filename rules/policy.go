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
	// Autocrypt offers the practice key on copies that leave the
	// practice; nil: no Autocrypt header.
	Autocrypt AutocryptSource
	Now       func() time.Time
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
	autocrypt AutocryptSource
	hours     atomic.Pointer[map[string]OfficeHours] // by account; nil: none
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
	p := &Policy{registry: cfg.Registry, keys: cfg.Keys, encrypter: cfg.Encrypter, sealer: cfg.Sealer, autocrypt: cfg.Autocrypt, now: cfg.Now}
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
// internal domain, usable key, professional recipient, passphrase on file
// (sealed, unless the client's consent prefers clear email), consent on
// file, else refused.
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
		return record.Decision{Recipient: recipient, Protection: record.Refused, RefusalCode: RefusalBadAddress,
			Reason: fmt.Sprintf("<%s> is not an address mail can be sent to; check it", recipient)}, ConsentStatus{}, nil
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
	if st.ProfessionalState == ConsentActive {
		return professionalDecision(d, st.Professional), st, nil
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
	d.Protection = record.Refused
	d.Reason, d.RefusalCode = refusalReason(n, st, key, now)
	return d, st, nil
}

// Prepare makes the outgoing copies of an accepted message, but for the
// encrypted and sealed ones: the plain copy (notice added, Bcc removed)
// for internal, consented and professional recipients and for the
// archive is written, and every copy, with its recipients, named in the
// result. EncryptCopies then writes the encrypted copies for key holders:
// one for those in To and Cc, and one of its own for each Bcc recipient,
// so nobody can read another recipient's key ID from the message; and a
// sealed copy for each sealed recipient, whose passphrase is theirs alone.
// In between the plain copy may be read (the relay archives it meanwhile).
//
// The content rules apply to what goes outside the practice in clear, to
// clients and to professionals alike: a professional's agreement covers
// the professional, not the client whose information travels unencrypted.
// Encrypted and sealed copies are readable only by their recipient, so the
// rules are not run for them.
func (p *Policy) Prepare(ctx context.Context, sub Submission, msg io.Reader, out Sink) (*Result, error) {
	s := p.cfg.Load()
	clearOutside, outside := false, false
	for _, d := range sub.Decisions {
		switch d.Protection {
		case "", record.Refused:
			return nil, fmt.Errorf("policy: recipient without a decision in submission %s", sub.ID)
		case record.Consented, record.Professional:
			clearOutside = true
			if err := p.stillClear(ctx, d); err != nil {
				return nil, err
			}
		case record.Encrypted:
			if p.encrypter == nil {
				return nil, fmt.Errorf("policy: %w: an encrypted recipient but no encryption configured", ErrUnavailable)
			}
		case record.Sealed:
			if d.Consent == nil || p.sealed.Load() == nil {
				return nil, fmt.Errorf("policy: %w: a sealed recipient without its passphrase event, or sealing is off", ErrUnavailable)
			}
		}
		outside = outside || d.Protection != record.Internal
	}
	var edit headerEdit
	var offered []byte
	if outside {
		edit = func(h *textproto.Header) { offered = p.offerPracticeKey(h) }
	}
	edit, marked := p.withNowMarker(sub, edit)
	tr, plain, passedAs, err := s.writePlain(msg, out, edit)
	if err != nil {
		return nil, err
	}

	res := &Result{Plain: plain, Decisions: append([]record.Decision(nil), sub.Decisions...), autocrypt: offered}
	markBcc(tr.header, res.Decisions)

	if clearOutside && len(s.rules) > 0 {
		if err := s.checkContent(out, plain, res); err != nil {
			return nil, err
		}
	}
	nameCopies(res, passedAs)
	if err := p.holdCopies(ctx, sub, res, *marked); err != nil {
		return nil, err
	}
	return res, nil
}

// stillClear asks again whether a recipient decided consented or
// professional at RCPT may still have the message in clear: the consent
// or the agreement may have been withdrawn, or run out, since (a slow
// DATA, a message held by the client).
func (p *Policy) stillClear(ctx context.Context, d record.Decision) error {
	now := p.now()
	st, err := p.registry.Current(ctx, d.Address, now)
	if err != nil {
		return err
	}
	if d.Protection == record.Consented && st.State == ConsentActive ||
		d.Protection == record.Professional && st.ProfessionalState == ConsentActive {
		return nil
	}
	if d.Protection == record.Professional && st.ProfessionalState != ConsentActive {
		st.State = ConsentNone // what changed is the professional entry
	}
	reason, code := refusalReason(d.Address, st, KeyLookup{}, now)
	return &Refusal{Reason: reason + " (this changed while the message was being sent)", Code: code, Recipient: true}
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
			clear.Protection = clearerOf(clear.Protection, d.Protection)
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

// clearerOf is the protection a clear copy is delivered under: consented
// when a client's consent lets it go, else professional when a
// professional's agreement does (both are asked again before every
// delivery), else that of its colleagues.
func clearerOf(copyProtection, recipient record.Protection) record.Protection {
	rank := func(p record.Protection) int {
		switch p {
		case record.Consented:
			return 3
		case record.Professional:
			return 2
		case "":
			return 0
		}
		return 1
	}
	if rank(recipient) > rank(copyProtection) {
		return recipient
	}
	return copyProtection
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
// that goes outside the practice in clear (contentScan says what they read). A
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
			return &Refusal{Code: RefusalTooMuchToCheck, Reason: fmt.Sprintf("The message holds more than sealpost can check against the practice's content rules (%d MiB of text, %d parts, %d levels), so it cannot go out unencrypted; send it only to recipients who get it encrypted or sealed",
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
		if d.Protection == record.Consented || d.Protection == record.Professional {
			clients = append(clients, d.Address)
		}
	}
	hit := record.RuleHit{Rule: r.Name, Action: r.Action, Where: where}
	reply := r.Reply
	if reply == "" {
		switch r.Action {
		case "refuse":
			reply = fmt.Sprintf("The practice's rule %q found what must not go out in unencrypted email in its %s", r.Name, where)
		default:
			reply = fmt.Sprintf("The practice's rule %q found what may only be sent encrypted in its %s", r.Name, where)
		}
	}
	reply = fmt.Sprintf("%s (rule %s; unencrypted to %s)", strings.TrimRight(reply, ". "), r.Name, strings.Join(angle(clients), ", "))
	return &Refusal{Reason: reply, Code: RefusalContentRule, Fired: []record.RuleHit{hit}}
}

func angle(as []string) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = "<" + a + ">"
	}
	return out
}
