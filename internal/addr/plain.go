package addr

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// ErrNotPlain is wrapped by Strict's error for an address that holds a
// character which Normalize, the provider or the recipient's mail system
// would change or drop.
var ErrNotPlain = errors.New("address not written plainly")

// Why a character is not plain.
const (
	Invisible  = "invisible"    // a format character (zero-width space, joiners, soft hyphen, bidi controls) or one UTS #46 drops
	LookAlike  = "look-alike"   // UTS #46 maps it to ASCII: full-width and other compatibility forms, the Kelvin sign
	Changed    = "changed"      // UTS #46 maps it to other non-ASCII text: upper case outside A-Z, compatibility forms
	Disallowed = "disallowed"   // UTS #46 disallows it: private use, unassigned, symbols
	Uncomposed = "unnormalised" // a sequence that Unicode normalisation (NFC) composes: a separately typed accent
)

// NotPlainError names the first character that made Strict refuse an address.
type NotPlainError struct {
	Address string // as given
	Rune    rune
	Kind    string // Invisible, LookAlike, Changed, Disallowed or Uncomposed
	Becomes string // for LookAlike and Changed, what UTS #46 maps Rune to
	InLocal bool   // in the local part, else in the domain
}

func (e *NotPlainError) Error() string {
	part := "domain"
	if e.InLocal {
		part = "local part"
	}
	return fmt.Sprintf("%v: its %s holds %s", ErrNotPlain, part, e.Char())
}

func (e *NotPlainError) Unwrap() error { return ErrNotPlain }

// Char describes the character in ASCII, for a reply a therapist reads:
// `U+200B, an invisible character` or `U+FF41, a look-alike of "a"`.
func (e *NotPlainError) Char() string {
	u := fmt.Sprintf("U+%04X", e.Rune)
	switch e.Kind {
	case Invisible:
		return u + ", an invisible character"
	case LookAlike:
		return fmt.Sprintf("%s, a look-alike of %q", u, e.Becomes)
	case Changed:
		var to []string
		for _, r := range e.Becomes {
			to = append(to, fmt.Sprintf("U+%04X", r))
		}
		return fmt.Sprintf("%s, which becomes %s", u, strings.Join(to, " "))
	case Uncomposed:
		return u + ", an accent typed apart from its letter"
	}
	return u + ", a character not allowed in addresses"
}

// Escape writes s in ASCII: every other character as [U+XXXX], so that an
// invisible one shows where it is.
func Escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf && r >= 0x20 && r != 0x7f {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "[U+%04X]", r)
		}
	}
	return b.String()
}

// uts46 is UTS #46's mapping alone, without the rules for domain labels, so
// that it can be asked about single characters of local parts as well.
var uts46 = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.StrictDomainName(false),
	idna.CheckHyphens(false), idna.CheckJoiners(false), idna.VerifyDNSLength(false))

// Strict is Normalize for an address a person typed: a mail client's MAIL
// FROM or RCPT TO, or the From: of a message. It refuses (ErrNotPlain, as a
// *NotPlainError) an address that normalisation would change other than by
// folding A-Z and writing a valid internationalised domain name as its
// A-label: UTS #46 maps full-width letters and other compatibility forms to
// plain ones and drops zero-width characters, so that "anna@cli\u200bent.example"
// is decided as anna@client.example while the raw text, given to the
// provider, may reach someone else or no one. The same characters in a local
// part are refused although Normalize keeps them there: the receiving
// system may well map them.
func Strict(s string) (string, error) {
	local, domain, err := splitRaw(s)
	if err != nil {
		return "", err
	}
	if e := notPlain(local); e != nil {
		e.Address, e.InLocal = s, true
		return "", e
	}
	if e := notPlain(asciiLower(domain)); e != nil {
		e.Address = s
		return "", e
	}
	if !isASCII(domain) {
		// A U-label must be one IDNA2008 registers as it is (no mapping,
		// joiners only where allowed, bidi rules).
		if _, err := idna.Registration.ToASCII(asciiLower(domain)); err != nil {
			return "", fmt.Errorf("%w: domain %q: %v", ErrInvalid, Escape(domain), err)
		}
	}
	return Normalize(s)
}

// notPlain returns the first character of s that UTS #46 would change or
// drop (A-Z aside), or nil.
func notPlain(s string) *NotPlainError {
	if isASCII(s) {
		return nil
	}
	for _, r := range s {
		if r < utf8.RuneSelf {
			continue
		}
		// Zero-width joiners and non-joiners are valid in UTS #46 (for
		// scripts that need them, in context), and so is every format
		// character it does not drop; none belongs in a typed address.
		if unicode.Is(unicode.Cf, r) {
			return &NotPlainError{Rune: r, Kind: Invisible}
		}
		m, err := uts46.ToUnicode(string(r))
		switch {
		case err != nil:
			return &NotPlainError{Rune: r, Kind: Disallowed}
		case m == "":
			return &NotPlainError{Rune: r, Kind: Invisible}
		case m == string(r):
		case isASCII(m):
			return &NotPlainError{Rune: r, Kind: LookAlike, Becomes: m}
		default:
			return &NotPlainError{Rune: r, Kind: Changed, Becomes: m}
		}
	}
	if !norm.NFC.IsNormalString(s) {
		i := norm.NFC.QuickSpanString(s)
		r, _ := utf8.DecodeRuneInString(s[i:])
		for j := i; j < len(s); {
			c, n := utf8.DecodeRuneInString(s[j:])
			if unicode.Is(unicode.Mn, c) {
				r = c
				break
			}
			j += n
		}
		return &NotPlainError{Rune: r, Kind: Uncomposed}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
