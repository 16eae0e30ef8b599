// Package addr parses and compares email addresses the way mail systems do,
// and turns them into short keyed hashes for logs, where a client's address
// must never appear in clear: it is health information.
package addr

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// MaxPathLength is RFC 5321's limit on a forward or reverse path (section 4.5.3.1.3).
const MaxPathLength = 256

// ErrInvalid is wrapped by every parse failure.
var ErrInvalid = errors.New("invalid address")

// Normalize returns the canonical form used to compare addresses: display
// name and angle brackets stripped, the domain in lower case ASCII (IDN domains
// become their A-label), the local part with A-Z in lower case. Postfix compares table
// keys case-insensitively too; no provider hands two mailboxes that differ only
// in case to two people. A "+tag" is kept: consent for jane@ does not cover
// jane+x@, because nobody promised that address was the same person.
func Normalize(s string) (string, error) {
	local, domain, err := Split(s)
	if err != nil {
		return "", err
	}
	return asciiLower(local) + "@" + domain, nil
}

// asciiLower folds A-Z only. Unicode folding would make distinct mailboxes
// one: "\u212Aim" (Kelvin sign) would become "kim", and kim's consent would
// cover mail delivered to another mailbox. (SMTPUTF8 leaves non-ASCII local
// parts to the receiving server, which may well tell them apart.)
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Split parses s (a bare address, <address>, or "Name <address>") and returns
// its local part as written and its domain normalised to lower-case ASCII.
func Split(s string) (local, domain string, err error) {
	local, domain, err = splitRaw(s)
	if err != nil {
		return "", "", err
	}
	domain, err = Domain(domain)
	if err != nil {
		return "", "", err
	}
	return local, domain, nil
}

// splitRaw is Split without the domain's normalisation.
func splitRaw(s string) (local, domain string, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", fmt.Errorf("%w: empty", ErrInvalid)
	}
	if !utf8.ValidString(s) {
		return "", "", fmt.Errorf("%w: not UTF-8", ErrInvalid)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", "", fmt.Errorf("%w: control character", ErrInvalid)
		}
	}
	if strings.ContainsAny(s, "<\"(") || strings.Contains(s, " ") {
		a, perr := mail.ParseAddress(s)
		if perr != nil {
			return "", "", fmt.Errorf("%w: %v", ErrInvalid, perr)
		}
		s = a.Address
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", "", fmt.Errorf("%w: %q has no local part or domain", ErrInvalid, s)
	}
	local, domain = s[:at], s[at+1:]
	if len(s) > MaxPathLength {
		return "", "", fmt.Errorf("%w: longer than %d octets", ErrInvalid, MaxPathLength)
	}
	if strings.HasPrefix(domain, "[") {
		return "", "", fmt.Errorf("%w: address literals are not accepted", ErrInvalid)
	}
	// A quoted local part may legally hold '@', but unquoted any of these is a
	// source route or a relay trick (u%ext@relay, ext!u@relay, u@ext@relay).
	if !strings.HasPrefix(local, "\"") && strings.ContainsAny(local, "@%!:,;<>[]\\ ") {
		return "", "", fmt.Errorf("%w: %q has routing characters in its local part", ErrInvalid, s)
	}
	// net/mail unquotes a quoted local part: what needed the quotes
	// (parentheses, quotes) is left bare, and must not pass as an address.
	if strings.HasPrefix(local, "\"") || strings.ContainsAny(local, "()\"") {
		return "", "", fmt.Errorf("%w: quoted local parts are not accepted", ErrInvalid)
	}
	if strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
		return "", "", fmt.Errorf("%w: %q has a misplaced dot", ErrInvalid, s)
	}
	return local, domain, nil
}

// Domain normalises a domain name to lower-case ASCII (A-labels for IDN).
func Domain(d string) (string, error) {
	if strings.HasSuffix(d, ".") {
		return "", fmt.Errorf("%w: domain %q ends with a dot", ErrInvalid, d)
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("%w: domain %q: %v", ErrInvalid, d, err)
	}
	if !strings.Contains(a, ".") {
		return "", fmt.Errorf("%w: domain %q is not fully qualified", ErrInvalid, d)
	}
	return strings.ToLower(a), nil
}

// DomainOf returns the normalised domain of an already normalised address.
func DomainOf(normalized string) string {
	return normalized[strings.LastIndexByte(normalized, '@')+1:]
}

// Redactor turns addresses into short keyed hashes for logs. The key stays on
// the server, so a leaked log does not reveal who wrote to whom, while an admin
// who knows an address can still find its lines (sealpost loghash ADDRESS).
type Redactor struct{ key []byte }

// NewRedactor returns a Redactor using key; a nil or empty key is refused.
func NewRedactor(key []byte) (*Redactor, error) {
	if len(key) < 16 {
		return nil, errors.New("log hash key must be at least 16 bytes")
	}
	return &Redactor{key: append([]byte(nil), key...)}, nil
}

// Hash returns "h:" and 12 hex digits of HMAC-SHA256 over the normalised
// address (over the raw text when it does not parse, so garbage is hidden too).
func (r *Redactor) Hash(address string) string {
	if r == nil {
		return "h:unset"
	}
	n, err := Normalize(address)
	if err != nil {
		n = address
	}
	m := hmac.New(sha256.New, r.key)
	m.Write([]byte(n))
	return "h:" + hex.EncodeToString(m.Sum(nil)[:6])
}
