package archive

import (
	"time"

	"github.com/sealpost/sealpost/record"
)

// Direction of a message relative to the practice.
type Direction string

const (
	Outbound Direction = "outbound" // submitted by a therapist through the relay
	Inbound  Direction = "inbound"  // a client's message ingested over IMAP
)

// Message describes one message going into the record. Its body (the message
// as its recipients could read it) is passed beside it as a stream.
type Message struct {
	ID        string            `json:"id"` // the relay's queue id, or the ingest id
	Time      time.Time         `json:"time"`
	Direction Direction         `json:"direction"`
	Account   string            `json:"account"`
	Sender    string            `json:"sender"`              // envelope sender
	Decisions []record.Decision `json:"decisions,omitempty"` // outbound: one per recipient
	Fired     []record.RuleHit  `json:"fired,omitempty"`     // content rules that fired
	Folder    string            `json:"folder,omitempty"`    // inbound: the IMAP folder
	// Refused are the recipients of the same submission that were refused
	// at RCPT while the others got the message ([policy] partial_sends =
	// "allow"), each with its refusal record's Ref.
	Refused []RefusedRecipient `json:"refused,omitempty"`
}

// RefusedRecipient is a recipient refused in a message's submission.
type RefusedRecipient struct {
	Address string `json:"address"`
	Ref     string `json:"ref"`
}

// DecisionsAtEnd is implemented by a message body whose recipients'
// decisions are complete only once it has been read to its end: the relay
// seals PDFs for some recipients while the archive reads the plain copy,
// and each PDF's SHA-256 belongs in the record. RecordMessage asks it after
// the body's end and records what it returns instead of Message.Decisions
// (the same recipients, in the same order).
type DecisionsAtEnd interface {
	DecisionsAtEnd() []record.Decision
}

// EventKind is what happened to a message after it was recorded.
type EventKind string

const (
	Delivered EventKind = "delivered" // the provider accepted the copy for these recipients
	Deferred  EventKind = "deferred"  // a temporary failure; it will be retried
	Delayed   EventKind = "delayed"   // still undelivered after the delay-warning time; the sender was told
	Bounced   EventKind = "bounced"   // failed for good; the sender got a delivery status notification
	Dropped   EventKind = "dropped"   // removed from the queue by an admin (sealpost queue drop)
	Aborted   EventKind = "aborted"   // recorded, but the relay stopped before it answered 250: never sent
)

// Event is a later fact about a recorded message.
type Event struct {
	MessageID  string    `json:"message_id"` // Message.ID
	Time       time.Time `json:"time"`
	Kind       EventKind `json:"kind"`
	Recipients []string  `json:"recipients,omitempty"`
	Reply      string    `json:"reply,omitempty"` // the provider's reply, or why it failed
}

// RefusalRecord is the record of a recipient or message the rules refused:
// it shows the rules worked.
type RefusalRecord struct {
	Time      time.Time `json:"time"`
	Account   string    `json:"account"`
	Recipient string    `json:"recipient,omitempty"`
	Reason    string    `json:"reason"`
	// Ref is the reference the therapist was told (record.NewRef), and Code
	// the reason's code (rules' Refusal* codes). Both, and the account, are
	// also in the record's clear header, so that `sealpost refusals show`
	// finds the refusal without the archive key.
	Ref  string `json:"ref,omitempty"`
	Code string `json:"code,omitempty"`
}
