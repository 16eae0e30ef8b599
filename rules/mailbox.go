package rules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/addr"
)

// Clients' mail reaches the practice at the provider, not through sealpost:
// archive/ingest reads it from a therapist's mailbox. A Mailbox decides what
// of it belongs in the record and what follows from a client's message: a
// key offered in an Autocrypt header, and an acknowledgement.

// Mailbox is the policy for one account's mailbox at the provider.
type Mailbox struct {
	account   string
	policy    *Policy
	own       map[string]bool // every account's addresses, normalised
	keys      ClientKeys
	acks      Acknowledgements
	autocrypt AutocryptMode
	autoreply *Autoreply
	send      SendFunc
	log       *slog.Logger
	redact    func(string) string
	now       func() time.Time
}

// MailboxConfig is what NewMailbox needs.
type MailboxConfig struct {
	Account string
	// Policy gives the internal domains (as they follow Reload) and the
	// consent registry.
	Policy *Policy
	// PracticeAddresses are every account's addresses: mail from them is
	// the practice's own, as is mail from the internal domains.
	PracticeAddresses []string
	Keys              ClientKeys
	Acknowledgements  Acknowledgements
	Autocrypt         AutocryptMode
	// Autoreply, when set, acknowledges clients' messages, sent with Send.
	Autoreply *Autoreply
	Send      SendFunc
	Logger    *slog.Logger
	// Redact stands for a client's address in the log.
	Redact func(string) string
	Now    func() time.Time
}

// ClientKeys is the keyring as a mailbox's policy uses it.
type ClientKeys interface {
	// Has says whether a key an admin gave or accepted carries the address.
	Has(ctx context.Context, address string) (bool, error)
	// TakeOffered stores the key that the Autocrypt header in h offers for
	// from: in use at once, or proposed until an admin accepts it. It
	// returns what became of each key; none when h offers none.
	TakeOffered(ctx context.Context, h textproto.Header, from string, use bool) ([]OfferedKey, error)
}

// OfferedKey is a key a client offered, as the keyring took it.
type OfferedKey struct {
	Fingerprint string
	Status      string // the keyring's: usable, expired, ...
	Proposed    bool   // waits for sealpost keys accept
}

// AutocryptMode is pgp.autocrypt: what becomes of a key a client offers.
type AutocryptMode string

const (
	AutocryptUse     AutocryptMode = "use"     // used at once
	AutocryptPropose AutocryptMode = "propose" // kept until an admin accepts it
	AutocryptIgnore  AutocryptMode = "ignore"
)

// Acknowledgements remembers when each client was last acknowledged
// (implemented by *Registry).
type Acknowledgements interface {
	LastAcknowledgement(ctx context.Context, account, address string) (time.Time, error)
	RecordAcknowledgement(ctx context.Context, account, address string, at time.Time) error
}

// Autoreply is an account's acknowledgement ([account.autoreply]).
type Autoreply struct {
	Every   time.Duration // at most one per client in this period
	From    string        // one of the account's addresses
	Subject string
	Text    string // the practice's words: turnaround time, crisis resources
	// Crisis are the crisis lines: in every acknowledgement, after Text
	// unless Text holds them already.
	Crisis string
	// Language picks the sentence with the expected answer date
	// (answerLanguages); "" is English.
	Language string
}

// SendFunc sends a message sealpost writes itself along the path a
// therapist's message takes, as one of account's addresses; a recipient the
// policy refuses makes it return a *Refusal.
type SendFunc func(ctx context.Context, account, from string, to []string, msg io.Reader) (id string, err error)

// NewMailbox checks the configuration and returns a mailbox's policy.
func NewMailbox(cfg MailboxConfig) (*Mailbox, error) {
	if cfg.Policy == nil || cfg.Keys == nil {
		return nil, errors.New("mailbox: the policy and the keyring are required")
	}
	if cfg.Autoreply != nil && (cfg.Send == nil || cfg.Acknowledgements == nil) {
		return nil, errors.New("mailbox: an acknowledgement needs a way to send it and to remember it")
	}
	switch cfg.Autocrypt {
	case AutocryptUse, AutocryptPropose, AutocryptIgnore:
	default:
		return nil, fmt.Errorf("mailbox: autocrypt must be use, propose or ignore, not %q", cfg.Autocrypt)
	}
	m := &Mailbox{account: cfg.Account, policy: cfg.Policy, own: map[string]bool{}, keys: cfg.Keys, acks: cfg.Acknowledgements,
		autocrypt: cfg.Autocrypt, autoreply: cfg.Autoreply, send: cfg.Send, log: cfg.Logger, redact: cfg.Redact, now: cfg.Now}
	for _, s := range cfg.PracticeAddresses {
		if n, err := addr.Normalize(s); err == nil {
			m.own[n] = true
		}
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.redact == nil {
		m.redact = func(string) string { return "(address)" }
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// IsPractice says whether an address is the practice's own: an account's,
// or in one of the internal domains (compared as Decide compares them).
func (m *Mailbox) IsPractice(address string) bool {
	n, err := addr.Normalize(address)
	if err != nil {
		return false
	}
	return m.own[n] || m.policy.isInternal(n)
}

// IsClient says whether an address is a client's: the consent registry has
// a record of it (in any state), or a key an admin gave or accepted carries
// it.
func (m *Mailbox) IsClient(ctx context.Context, address string) (bool, error) {
	st, err := m.policy.registry.Current(ctx, address, m.now())
	if err != nil {
		return false, err
	}
	if st.State != ConsentNone {
		return true, nil
	}
	return m.keys.Has(ctx, address)
}

// Correspondence is what a message found in the mailbox is to the record.
type Correspondence struct {
	From       string   // the sender, normalised
	Clients    []string // normalised; none: not the record's business
	FromClient bool     // from a client; otherwise from the practice to Clients
}

// Classify decides from a message's envelope (its From addresses, and its
// To, Cc and Bcc, as written) whether the record keeps it: mail from a
// client, or from the practice to clients (a Sent folder). The first From
// address that can be read is the sender. An error means the registry or
// the keyring could not be read: the message is left for later.
func (m *Mailbox) Classify(ctx context.Context, from, recipients []string) (Correspondence, error) {
	var c Correspondence
	for _, a := range from {
		if n, err := addr.Normalize(a); err == nil {
			c.From = n
			break
		}
	}
	if c.From == "" {
		return c, nil
	}
	if m.IsPractice(c.From) {
		for _, a := range recipients {
			n, err := addr.Normalize(a)
			if err != nil {
				continue
			}
			ok, err := m.IsClient(ctx, n)
			if err != nil {
				return Correspondence{}, err
			}
			if ok {
				c.Clients = append(c.Clients, n)
			}
		}
		return c, nil
	}
	ok, err := m.IsClient(ctx, c.From)
	if err != nil || !ok {
		return Correspondence{From: c.From}, err
	}
	c.Clients, c.FromClient = []string{c.From}, true
	return c, nil
}

// ClientWrote follows up a client's message once it is in the record: the
// key the client offers is taken as pgp.autocrypt says, and the client is
// acknowledged when the account has an autoreply. from is the client's
// normalised address. Failures are logged: the message is recorded
// whatever becomes of them.
func (m *Mailbox) ClientWrote(ctx context.Context, h textproto.Header, from string) {
	m.offeredKey(ctx, h, from)
	if m.autoreply != nil {
		m.acknowledge(ctx, h, from)
	}
}

// offeredKey takes the key in a client's Autocrypt header into the keyring.
func (m *Mailbox) offeredKey(ctx context.Context, h textproto.Header, from string) {
	if m.autocrypt == AutocryptIgnore {
		return
	}
	keys, err := m.keys.TakeOffered(ctx, h, from, m.autocrypt == AutocryptUse)
	if err != nil {
		m.log.Warn("a client's Autocrypt key could not be taken", "client", m.redact(from), "err", err)
		return
	}
	for _, k := range keys {
		if k.Proposed {
			m.log.Info("a client offered a key in an Autocrypt header; it is used after: sealpost keys accept FINGERPRINT",
				"client", m.redact(from), "fingerprint", k.Fingerprint)
		} else {
			m.log.Info("a client's Autocrypt key is in the keyring", "client", m.redact(from), "fingerprint", k.Fingerprint, "status", k.Status)
		}
	}
}
