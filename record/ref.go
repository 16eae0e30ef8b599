package record

import (
	"crypto/rand"
	"strings"
)

// refAlphabet has no characters that are read or said alike (0/O, 1/I/L,
// 5/S, 8/B, U/V): a therapist reads the reference off a dialog box, and
// an admin may hear it on the phone.
const refAlphabet = "234679ACDEFGHJKMNPQRTWXYZ"

// RefLength is the number of characters of a refusal's reference: 25^6,
// about 244 million. A practice with a thousand refusals a year has about
// one chance in 500 that two of them share one; `sealpost refusals show`
// then lists both, each with its time and account.
const RefLength = 6

// NewRef returns a refusal's reference, e.g. "R7K2QX": what a therapist
// quotes to the admin, who finds the refusal with `sealpost refusals show`.
func NewRef() string {
	var out [RefLength]byte
	var b [16]byte
	for n := 0; n < RefLength; {
		rand.Read(b[:])
		for _, c := range b {
			// 250 is the largest multiple of 25 a byte holds: no letter is likelier.
			if c < 250 && n < RefLength {
				out[n] = refAlphabet[int(c)%len(refAlphabet)]
				n++
			}
		}
	}
	return string(out[:])
}

// NormalizeRef reads a reference as a person typed it (any case, spaces,
// "ref" before it); ok is false when it cannot be one.
func NormalizeRef(s string) (string, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	s = strings.TrimSpace(strings.TrimPrefix(s, "REF"))
	s = strings.NewReplacer(" ", "", "-", "").Replace(s)
	if len(s) != RefLength {
		return "", false
	}
	for _, c := range s {
		if !strings.ContainsRune(refAlphabet, c) {
			return "", false
		}
	}
	return s, true
}
