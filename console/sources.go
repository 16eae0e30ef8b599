package console

import (
	"context"
	"time"

	"github.com/sealpost/sealpost/internal/status"
	"github.com/sealpost/sealpost/record"
)

// StatusSource is what `sealpost status` shows, for the whole relay; the
// console scopes it to the role.
type StatusSource interface {
	Status(ctx context.Context) *status.Report
}

// Refusal is a refusal record as its clear header shows it (no archive key
// is needed to list refusals).
type Refusal struct {
	Time    time.Time
	Ref     string
	Code    string // rules' Refusal* codes
	Account string
	// Recipient is set when one recipient was refused, not the whole
	// message; Is then says whether an address is that recipient (the
	// record keeps it only as a keyed hash).
	Recipient bool
	Is        func(address string) bool
	// Address is the refused recipient when the registry or the keyring
	// knows it (a consent revoked or run out, a key no longer usable);
	// "" otherwise. Only Refusal fills it in.
	Address string
}

// RefusalSource finds refusal records in the archive.
type RefusalSource interface {
	// Refusals are those since a time, oldest first.
	Refusals(ctx context.Context, since time.Time) ([]Refusal, error)
	// Refusal is the record (rarely several) with a reference.
	Refusal(ctx context.Context, ref string) ([]Refusal, error)
}

// Evidence is an uploaded scan of a signed form: it goes into the archive,
// encrypted, linked to the consent event it proves, and nowhere else.
type Evidence struct {
	Filename string
	Type     string // sniffed: application/pdf, image/jpeg or image/png
	Data     []byte
}

// ImportedKey is a key the keyring took.
type ImportedKey struct {
	Fingerprint string
	UserIDs     []string
	Status      string // usable, expired, revoked, unusable
}

// Recorder changes what the rules decide with: consents, keys and
// passphrases. Every change names who made it (by).
type Recorder interface {
	// RecordConsent records a client's written consent to unencrypted
	// email, and its scan when there is one.
	RecordConsent(ctx context.Context, ev record.ConsentEvent, scan *Evidence) (record.ConsentEvent, error)
	// ImportKey adds OpenPGP public keys (armored or binary).
	ImportKey(ctx context.Context, data []byte, by string) ([]ImportedKey, error)
	// SetPassphrase records the passphrase a client opens sealed PDFs with.
	SetPassphrase(ctx context.Context, address, client, passphrase, by string) (record.ConsentEvent, error)
}

// QueuedMessage is a message waiting in the queue.
type QueuedMessage struct {
	ID          string
	Account     string
	Received    time.Time
	Size        int64
	Attempts    int
	NextAttempt time.Time
	Pending     int    // recipients not yet delivered
	LastReply   string // what the provider last said, or why it could not be reached
	Dropped     bool
	// HeldUntil is when copies to clients, held for the sender's office
	// hours, are released; zero when none are held.
	HeldUntil time.Time
}

// QueueAdmin is the relay's queue.
type QueueAdmin interface {
	List() []QueuedMessage
	Retry(id string) error
	Drop(id string) error
}

// Client is a client's standing as the Clients page shows it.
type Client struct {
	Address    string
	Name       string // name or chart id
	Consent    string // none, active, expired, revoked
	Signed     string
	Expires    string
	Evidence   string
	Passphrase time.Time // when the passphrase on file was set; zero: none
	// WouldGet is how a message to them would go now (internal, encrypted,
	// sealed, professional, consented, refused) and Why the rules' reason.
	WouldGet string
	Why      string
}

// ClientDirectory is the consent registry, searched a page at a time.
type ClientDirectory interface {
	// SearchClients is a page of clients in address order after the
	// address given: all, or those whose address starts with text or
	// whose name or chart id contains it; next is "" at the end.
	SearchClients(ctx context.Context, text, after string, limit int) (page []Client, next string, err error)
	// ExpiringConsents are active consents that end within days, soonest
	// first, at most limit; more says there are others.
	ExpiringConsents(ctx context.Context, days, limit int) (soonest []Client, more bool, err error)
	// Client is one client's standing now and their consent history,
	// oldest first; ok false when the registry does not know them.
	Client(ctx context.Context, address string) (c Client, history []record.ConsentEvent, ok bool, err error)
}

// Key is a recipient's OpenPGP key in the keyring.
type Key struct {
	Fingerprint string
	UserIDs     []string
	Algorithm   string
	Created     time.Time
	Expires     time.Time // zero: no end
	Status      string    // usable, expired, revoked, unusable, proposed
	Detail      string
	Source      string
	Imported    time.Time
}

// KeyAdmin is the keyring of recipients' keys.
type KeyAdmin interface {
	Keys(ctx context.Context) ([]Key, error)
	Import(ctx context.Context, data []byte, by string) ([]ImportedKey, error)
	// Accept makes a key offered in an Autocrypt header usable.
	Accept(ctx context.Context, fingerprint, by string) error
	Remove(ctx context.Context, fingerprint, by string) error
}

// ArchiveState is the record's state as its clear headers show it, read
// without the archive's private key.
type ArchiveState struct {
	Records uint64 // the newest record's number
	Head    string // its hash
	Holds   []Hold
}

// Hold is an active legal hold.
type Hold struct {
	ID           string
	Since, Until string // YYYY-MM-DD, either may be open
	Clients      int    // client addresses it covers (kept as keyed hashes)
	Set          time.Time
}

// TimelineEntry is a record about a client as its clear header shows it.
type TimelineEntry struct {
	Time      time.Time
	Kind      string // message, event, refusal, consent, evidence, activity
	Direction string // a message's: outbound, inbound
	Event     string // an event's: delivered, bounced ...
	Code      string // a refusal's reason code
	Account   string
	Size      int64
}

// ArchiveSource reads the archive's state.
type ArchiveSource interface {
	State(ctx context.Context) (ArchiveState, error)
	// Timeline is the records naming a client's address, oldest first, at
	// most limit; more says there were others.
	Timeline(ctx context.Context, address string, limit int) (entries []TimelineEntry, more bool, err error)
	// Summary counts the records since a time.
	Summary(ctx context.Context, since time.Time) (Summary, error)
	// PruneDryRun says which segments a prune would remove now (past the
	// retention, no hold on them) and why the oldest left stays; it
	// verifies the whole archive first, so it takes a while.
	PruneDryRun(ctx context.Context) (removed []string, kept string, err error)
}

// Summary is what the record holds since a time.
type Summary struct {
	Sent, Received, Delivered, Bounced, Refused int
	RefusedBy                                   map[string]int // refusals by account
}

// Absence is a stretch of days a therapist is away (sealpost away).
type Absence struct {
	ID          int64
	Account     string
	From, Until string // YYYY-MM-DD, both days included
	Note        string
	RecordedBy  string
	RecordedAt  time.Time
}

// AbsenceBook is the registry's absences.
type AbsenceBook interface {
	// Absences are account's absences that stand, earliest first.
	Absences(ctx context.Context, account string) ([]Absence, error)
	AddAbsence(ctx context.Context, a Absence) (Absence, error)
	// CancelAbsence records that absence id of account no longer stands.
	CancelAbsence(ctx context.Context, account string, id int64, by string) error
	// Today is the day it is now in account's time zone (its office
	// hours' zone, else the server's), YYYY-MM-DD: what "in the past"
	// means for its absences. hasHours is false when the account has no
	// office hours, so an absence closes nothing yet.
	Today(account string) (day string, hasHours bool)
}
