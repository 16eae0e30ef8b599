// Package rules decides, for every recipient of a message, whether and how it
// may go out (internal colleague, encrypted to an OpenPGP key, sealed in a
// PDF that opens with the client's passphrase, in clear with the client's
// written consent, or refused), and transforms the message for each
// decision: the practice's confidentiality notice, then PGP/MIME or the
// sealed PDF (rules/sealed).
//
// The relay calls Decide at RCPT, then Prepare and EncryptCopies after DATA,
// and RecheckConsent before a copy that goes out in clear on consent is
// handed to the provider, RecheckSealed before a sealed one: every decision
// goes through one order. The consent registry (Registry) is the policy's,
// clients' passphrases in it too (encrypted at rest). For mail read from a
// therapist's mailbox, a Mailbox says what the record keeps and what
// follows from a client's message (an Autocrypt key, an acknowledgement).
// CheckSettings and CheckSealed are the checks of the policy's settings.
//
// rules opens no sockets and never imports archive: the archive records
// the decisions in the vocabulary of package record.
package rules

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules/sealed"
)

// Submission is what the relay knows about an accepted message when it calls Prepare.
type Submission struct {
	ID        string            // the relay's queue id
	Account   string            // the authenticated account's username
	Sender    string            // envelope sender (MAIL FROM)
	Decisions []record.Decision // one per accepted recipient, in RCPT order; none is Refused
	// Automatic marks a message sealpost writes itself (an
	// acknowledgement): never held outside office hours.
	Automatic bool
}

// Sink is where Prepare and EncryptCopies write the copies they make. The
// relay owns the storage (spool files) and makes them durable; the names are
// the policy's: SubmittedCopyName, RewrittenCopyName, EncryptedCopyName and
// SealedCopyName.
type Sink interface {
	Create(name string) (io.WriteCloser, error)
	// Open reads back a file the policy created and closed earlier.
	Open(name string) (io.ReadCloser, error)
}

// The names of the Sink files a message's copies are written to.
const (
	// SubmittedCopyName holds the message as submitted with the notice
	// added and Bcc removed, or, when the client encrypted it, as it came.
	SubmittedCopyName = "sent"
	// RewrittenCopyName holds the clear copy made again from the submitted
	// one when a message only claims to be encrypted.
	RewrittenCopyName = "plain"
)

// EncryptedCopyName names the nth encrypted copy of a message, from 1.
func EncryptedCopyName(n int) string { return "enc-" + strconv.Itoa(n) }

// Copy is one outgoing copy and the envelope recipients it goes to.
type Copy struct {
	Name       string            `json:"name"`       // the Sink file holding the copy, ready to send
	Recipients []string          `json:"recipients"` // envelope recipients (Decision.Recipient)
	Protection record.Protection `json:"protection"` // Encrypted or Sealed, or Internal/Consented for clear copies
	// SealedWith is, for a Sealed copy (one recipient), the id of the
	// passphrase-set event whose passphrase opens it (RecheckSealed).
	SealedWith int64 `json:"sealed_with,omitempty"`
	// HoldUntil is when the copy may go: it was accepted outside its
	// sender's office hours. Zero: at once. Copies of one message may
	// share a Name (one file) with different recipients and holds.
	HoldUntil time.Time `json:"hold_until,omitzero"`
}

// Result is what Prepare made of a message.
type Result struct {
	// Plain names the Sink file holding the message as its recipients can read it:
	// after the notice, before encryption, without Bcc. The archive keeps it.
	Plain string
	// Copies lists every outgoing copy; every accepted recipient is in exactly one.
	Copies []Copy
	// Decisions are the submission's decisions, with Bcc filled in.
	Decisions []record.Decision
	// Fired lists the content rules that fired without refusing the message.
	Fired []record.RuleHit
	// Held says, when copies are held outside the sender's office hours,
	// until when, for the sender's reply: "Mon 7 Dec 09:00 (office hours)",
	// or with the closure in force ("(away: conference)").
	Held string
	// Sealed is what EncryptCopies made for each sealed recipient (by
	// Decision.Recipient): the PDF's SHA-256 and size, for the record.
	Sealed map[string]sealed.Result

	toEncrypt []encryptJob // Prepare's, for EncryptCopies
	toSeal    []sealJob
	autocrypt []byte // the Autocrypt field the plain copy got, for the sealed copies
}

type encryptJob struct {
	name         string
	fingerprints []string
}

// Refusal is returned (as an error) when the message or a recipient may not go
// out. The relay answers 550 5.7.1, or 554 5.6.0 when Malformed, 552 5.3.4
// when TooLarge, saying "Nothing was sent to anybody." before the Reason and
// the reference after it.
type Refusal struct {
	// Reason is what the therapist reads: what is wrong, in plain words, and
	// what to do or whom to ask; one or two sentences without a final period.
	Reason string
	// Code names the reason for the log, the record and `sealpost refusals
	// show`, which tells the admin the fix (AdminFix).
	Code string
	// Ref is the reference the relay gave the refusal when it recorded it
	// (record.NewRef): the therapist quotes it, the admin looks it up.
	Ref   string
	Fired []record.RuleHit
	// Recipient: refused for a recipient's sake (no consent any more),
	// not for the message's content or form.
	Recipient bool
	// Malformed: refused for the message's own structure (a part cut off,
	// a damaged encoding), which sending it again as it is cannot mend.
	Malformed bool
	// TooLarge: refused for its size (too large to seal as a PDF).
	TooLarge bool
}

func (r *Refusal) Error() string { return r.Reason }

// KeyStatus says whether an address has a key that may be used for encryption.
type KeyStatus string

const (
	KeyUsable   KeyStatus = "usable"
	KeyNone     KeyStatus = "none"     // no key carries this address
	KeyExpired  KeyStatus = "expired"  // the only keys for the address have expired
	KeyRevoked  KeyStatus = "revoked"  // the only keys for the address are revoked
	KeyUnusable KeyStatus = "unusable" // a key exists but has no valid encryption-capable (sub)key
)

// KeyLookup is the answer of a Keys lookup.
type KeyLookup struct {
	Status      KeyStatus
	Fingerprint string // set when Status is KeyUsable (and, where known, for the unusable key)
	Detail      string // short human explanation for replies and the record, e.g. "expired on 2026-01-03"
}

// Keys finds recipients' OpenPGP keys (implemented by rules/pgp).
type Keys interface {
	Lookup(ctx context.Context, address string) (KeyLookup, error)
}

// Encrypter turns a complete RFC 5322 message into an RFC 3156 PGP/MIME message
// encrypted to the keys with the given fingerprints (and to the practice key,
// signed with it when one is configured), with protected headers: the real
// Subject inside, "..." outside. Implemented by rules/pgp.
type Encrypter interface {
	EncryptMIME(ctx context.Context, w io.Writer, msg io.Reader, fingerprints []string) error
}

// ErrUnavailable is wrapped when a decision cannot be made because something
// rules depends on (the registry, the keyring) cannot be read. The relay
// answers 451 4.3.0: a decision is never made without its data.
var ErrUnavailable = fmt.Errorf("policy data unavailable")
