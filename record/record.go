// Package record is the vocabulary of the clinical record: how a
// recipient's copy travels (Protection), the decision for each recipient and
// what it rested on (Decision, ConsentEvent), and the content rules that
// fired (RuleHit). rules makes these, the relay carries them, and the archive
// keeps them: their JSON form is part of the archive's format, which must
// stay readable for years, so fields are only ever added.
package record

import "time"

// Protection is how one recipient's copy travels.
type Protection string

const (
	Internal  Protection = "internal"  // a colleague at one of the practice's own domains
	Encrypted Protection = "encrypted" // encrypted to the recipient's usable OpenPGP key
	Consented Protection = "consented" // in clear, because the client consented in writing
	// Sealed: a client without a usable key, with a passphrase on file: the
	// message travels as an encrypted PDF that opens with it.
	Sealed Protection = "sealed"
	// Professional: in clear to another clinician or a business associate
	// the practice recorded as such (a BAA, a referral agreement): not a
	// client, and never counted as one.
	Professional Protection = "professional"
	Refused      Protection = "refused" // may not be sent at all
)

// Decision is the verdict for one envelope recipient. It travels with the
// message to the queue and into the archive, so it is plain data.
type Decision struct {
	// Recipient is the envelope recipient the relay accepted at RCPT (in the
	// normalised form: what was decided on is what is delivered).
	Recipient string `json:"recipient"`
	// Address is Recipient normalised (internal/addr.Normalize).
	Address    string     `json:"address"`
	Protection Protection `json:"protection"`
	// Reason is one sentence saying why. For Refused it is what the therapist
	// reads in their mail client after "Nothing was sent to anybody.": the
	// address, why, and what to ask the admin for.
	Reason string `json:"reason"`
	// RefusalCode names the reason of a Refused decision for the log and
	// `sealpost refusals show` (rules' Refusal* codes).
	RefusalCode string `json:"refusal_code,omitempty"`
	// Consent is the consent event a Consented decision relied on, for
	// Professional the professional-given event, or for Sealed the
	// passphrase-set event: its ID names the passphrase the copy is sealed
	// with.
	Consent *ConsentEvent `json:"consent,omitempty"`
	// KeyFingerprint is the key an Encrypted decision encrypts to (hex, upper case).
	KeyFingerprint string `json:"key_fingerprint,omitempty"`
	// Bcc is set by rules.Policy.Prepare when the recipient is in neither To nor Cc.
	Bcc bool `json:"bcc,omitempty"`
	// SealedPDFSHA256 and SealedPDFSize describe the PDF a Sealed recipient
	// was sent (hex SHA-256 of the attachment's decoded bytes), set once it
	// was made: an auditor can match it to the PDF the client received.
	SealedPDFSHA256 string `json:"sealed_pdf_sha256,omitempty"`
	SealedPDFSize   int64  `json:"sealed_pdf_size,omitempty"`
	// HeldUntil is set when the recipient's copy was accepted outside the
	// sender's office hours and held until they open.
	HeldUntil time.Time `json:"held_until,omitzero"`
	// SentNow says why a copy that would have been held went at once:
	// SentNowMarker or SentNowNoHold.
	SentNow string `json:"sent_now,omitempty"`
}

// Why a copy went outside office hours although its sender's are held
// (Decision.SentNow).
const (
	// SentNowMarker: the subject began with "[now]", which was removed
	// from every copy and the archived one.
	SentNowMarker = "marker"
	// SentNowNoHold: the client's consent says they may be written to at
	// any time (consent add --no-hold).
	SentNowNoHold = "no-hold"
)

// Kinds of a message's events about its time in the queue, beside the
// delivery outcomes (the archive's Event.Kind).
const (
	EventHeld     = "held"     // accepted outside office hours; held until the reply names
	EventReleased = "released" // the office hours opened; the held copy goes out now
)

// ConsentEvent is one entry of the consent registry's history. Nothing in the
// registry is updated in place: giving and revoking consent are both events,
// and so are setting (or replacing) and removing a client's passphrase for
// sealed PDFs. A passphrase event names who and when, never the secret.
type ConsentEvent struct {
	ID int64 `json:"id"`
	// Kind is "given" or "revoked" (consent to unencrypted email),
	// "passphrase-set" or "passphrase-removed", or "professional-given" or
	// "professional-revoked" (a recipient who is not a client).
	Kind      string   `json:"kind"`
	Client    string   `json:"client"` // name or chart id; for a professional, who they are
	Addresses []string `json:"addresses"`
	// Domain is set instead of Addresses on a professional event that
	// covers every address of one domain (an insurer, a clinic).
	Domain   string `json:"domain,omitempty"`
	Signed   string `json:"signed,omitempty"` // YYYY-MM-DD the client signed
	Evidence string `json:"evidence,omitempty"`
	Expires  string `json:"expires,omitempty"` // YYYY-MM-DD, empty: no expiry
	Reason   string `json:"reason,omitempty"`  // for revocations
	// Prefer is "clear" on a "given" event when the client asked for
	// unencrypted email although a passphrase is on file.
	Prefer string `json:"prefer,omitempty"`
	// NoHold is set on a "given" event when the client may be written to
	// at any time: mail to them is never held outside office hours.
	NoHold     bool      `json:"no_hold,omitempty"`
	RecordedBy string    `json:"recorded_by"`
	RecordedAt time.Time `json:"recorded_at"`
}

// RuleHit is a content rule that fired on a message.
type RuleHit struct {
	Rule   string `json:"rule"`   // the rule's name from [[policy.rule]]
	Action string `json:"action"` // "refuse" or "require_encryption"
	Where  string `json:"where"`  // "subject" or "body"
}

// The kinds of ConsentEvent.
const (
	ConsentGiven      = "given"
	ConsentRevoked    = "revoked"
	PassphraseSet     = "passphrase-set"
	PassphraseRemoved = "passphrase-removed"
	// A professional recipient (another clinician, a business associate)
	// recorded or withdrawn: not a client's consent.
	ProfessionalGiven   = "professional-given"
	ProfessionalRevoked = "professional-revoked"
)

// PreferClear is ConsentEvent.Prefer for a client who asked for clear email.
const PreferClear = "clear"
