package archive

import (
	"bufio"
	"bytes"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/record"
)

// NamedAddress is an address a message's To or Cc field names. The header
// of a group message may name people it was never sent to (a recipient
// refused at RCPT while the others got it): a reader of the record must
// not take the header's word for who received it.
type NamedAddress struct {
	Field   string `json:"field"` // "to" or "cc"
	Address string `json:"address"`
}

// namedIn reads the To and Cc fields of a message's header section (what
// comes before its first empty line; a header cut short is read as far as
// it goes). Addresses are normalised as decisions are, so they compare with
// the envelope's.
func namedIn(raw []byte) []NamedAddress {
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		raw = raw[:i+4]
	} else if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		raw = raw[:i+2]
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil && h.Len() == 0 {
		return nil
	}
	mh := mail.Header{Header: message.Header{Header: h}}
	var out []NamedAddress
	seen := map[string]bool{}
	for _, field := range []string{"To", "Cc"} {
		list, _ := mh.AddressList(field)
		for _, a := range list {
			n, err := addr.Normalize(a.Address)
			if err != nil {
				n = strings.ToLower(strings.TrimSpace(a.Address))
			}
			if n == "" || seen[n] {
				continue
			}
			seen[n] = true
			out = append(out, NamedAddress{Field: strings.ToLower(field), Address: n})
		}
	}
	return out
}

// fieldOf says where the header names an envelope recipient: "to", "cc",
// or "bcc" when in neither (Bcc recipients are in no header the others see).
func fieldOf(named []NamedAddress, d record.Decision) string {
	for _, n := range named {
		if n.Address == d.Address || strings.EqualFold(n.Address, d.Recipient) {
			return n.Field
		}
	}
	if d.Bcc || len(named) > 0 {
		return "bcc"
	}
	return ""
}

// NotSent is someone a message's submission named who did not get it: an
// address in To or Cc that is none of its envelope recipients, or a
// recipient refused at RCPT while the others got the message.
type NotSent struct {
	Address string `json:"address"`
	// Field is "to" or "cc"; "" for a refused recipient the header does not
	// name (a Bcc).
	Field string `json:"field,omitempty"`
	// Ref is the refusal's reference, when the record links it.
	Ref string `json:"refusal_ref,omitempty"`
}

// notSentTo lists who the message was not sent to although its header or
// its submission named them.
func notSentTo(named []NamedAddress, decisions []record.Decision, refused []RefusedRecipient) []NotSent {
	refOf := func(a string) (string, bool) {
		for _, r := range refused {
			if strings.EqualFold(r.Address, a) {
				return r.Ref, true
			}
		}
		return "", false
	}
	var out []NotSent
	seen := map[string]bool{}
	for _, n := range named {
		found := false
		for _, d := range decisions {
			if n.Address == d.Address || strings.EqualFold(n.Address, d.Recipient) {
				found = true
				break
			}
		}
		if !found {
			ref, _ := refOf(n.Address)
			out = append(out, NotSent{Address: n.Address, Field: n.Field, Ref: ref})
			seen[strings.ToLower(n.Address)] = true
		}
	}
	for _, r := range refused {
		if !seen[strings.ToLower(r.Address)] {
			out = append(out, NotSent{Address: r.Address, Ref: r.Ref})
		}
	}
	return out
}

// FieldOf says where the message's header names recipient d: "to", "cc",
// "bcc" (an envelope recipient named in neither), or "" when the header
// was not read.
func (m *ViewMessage) FieldOf(d record.Decision) string { return fieldOf(m.Named, d) }

// NotSentTo lists who the message's header or submission named that it
// was not sent to.
func (m *ViewMessage) NotSentTo() []NotSent { return notSentTo(m.Named, m.Decisions, m.Refused) }

// EventsFor lists what became of the copy for one recipient, in order:
// events naming it, and those about the whole message (dropped, aborted).
func (m *ViewMessage) EventsFor(d record.Decision) []Event {
	var out []Event
	for _, ev := range m.Events {
		if len(ev.Recipients) == 0 {
			out = append(out, ev)
			continue
		}
		for _, r := range ev.Recipients {
			if strings.EqualFold(r, d.Address) || strings.EqualFold(r, d.Recipient) {
				out = append(out, ev)
				break
			}
		}
	}
	return out
}
