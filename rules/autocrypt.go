package rules

import (
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/addr"
)

// AutocryptSource gives the Autocrypt header value (autocrypt.org, Level
// 1: "addr=...; keydata=...", folded) that offers the practice key for a
// practice address, or "" when there is none (implemented by rules/pgp's
// Encrypter).
type AutocryptSource interface {
	AutocryptHeader(address string) string
}

// offerPracticeKey puts an Autocrypt header for the message's From address
// on a copy that leaves the practice, so that the recipient's mail program
// (Thunderbird, K-9/FairEmail, Delta Chat) learns the practice key,
// verifies the practice's signature and can encrypt its replies. A message
// whose sender's program offers a key of its own keeps that one: two
// Autocrypt headers would make receivers ignore both. It returns the
// field it added (nil: none), which the sealed copies carry too.
func (p *Policy) offerPracticeKey(h *textproto.Header) []byte {
	if p.autocrypt == nil || h.Has("Autocrypt") {
		return nil
	}
	mh := mail.Header{Header: message.Header{Header: *h}}
	from, err := mh.AddressList("From")
	if err != nil || len(from) != 1 {
		return nil
	}
	n, err := addr.Normalize(from[0].Address)
	if err != nil {
		return nil
	}
	v := p.autocrypt.AutocryptHeader(n)
	if v == "" {
		return nil
	}
	field := []byte("Autocrypt: " + v + "\r\n")
	h.AddRaw(field)
	return field
}
