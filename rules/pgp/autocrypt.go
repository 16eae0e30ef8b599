package pgp

import (
	"encoding/base64"
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/addr"
)

// AutocryptKey returns the key an Autocrypt header (Autocrypt Level 1)
// offers for from: the header's addr must be the message's sender. A
// message with more than one Autocrypt header, or a header with an
// attribute this reader does not know and must not ignore, offers nothing.
func AutocryptKey(h textproto.Header, from string) ([]byte, bool) {
	values := h.Values("Autocrypt")
	if len(values) != 1 {
		return nil, false
	}
	sender, err := addr.Normalize(from)
	if err != nil {
		return nil, false
	}
	var address, keydata string
	for _, attr := range strings.Split(values[0], ";") {
		name, value, ok := strings.Cut(strings.TrimSpace(attr), "=")
		if !ok {
			return nil, false
		}
		switch name = strings.ToLower(strings.TrimSpace(name)); {
		case name == "addr":
			address = strings.TrimSpace(value)
		case name == "keydata":
			keydata = value
		case name == "prefer-encrypt", strings.HasPrefix(name, "_"):
		default:
			return nil, false // a critical attribute unknown to us
		}
	}
	n, err := addr.Normalize(address)
	if err != nil || n != sender || keydata == "" {
		return nil, false
	}
	key, err := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, keydata))
	if err != nil || len(key) == 0 {
		return nil, false
	}
	return key, true
}
