package rules

import (
	"bytes"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// What a reader reads may be at most this many times longer than the text
// it comes from (NFKC expands a few characters up to 18 times; no text
// anyone writes comes near).
const maxReaderTextGrowth = 4

// readerText is text as a reader reads it: compatibility forms folded
// (NFKC: fullwidth and mathematical digits, ligatures, no-break and other
// spaces), every Unicode dash and minus sign as '-', every space as ' ',
// line and paragraph separators as new lines, digits of other scripts as
// ASCII digits, invisible format characters (zero-width spaces and joiners,
// soft hyphens, direction marks, byte order marks) removed, and combining
// marks on digits, dashes and spaces dropped. Bytes that are not UTF-8 stay
// as they are, so that ASCII patterns still match in text of an unknown
// charset, except Windows-1252's no-break space, soft hyphen and dashes.
func readerText(b []byte) ([]byte, error) {
	if isASCII(b) {
		return b, nil
	}
	mapped := mapReaderRunes(make([]byte, 0, len(b)), b)
	limit := maxReaderTextGrowth*len(b) + 1024
	folded, err := io.ReadAll(io.LimitReader(norm.NFKC.Reader(bytes.NewReader(mapped)), int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(folded) > limit {
		return nil, errTooMuchToScan
	}
	// Folding makes dashes and spaces of its own (U+FE58 is U+2014).
	return mapReaderRunes(mapped[:0], folded), nil
}

func mapReaderRunes(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(src[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			// Windows-1252 in a part that does not say so: its no-break
			// space, soft hyphen and dashes.
			switch c {
			case 0xa0:
				dst = append(dst, ' ')
			case 0xad:
			case 0x96, 0x97:
				dst = append(dst, '-')
			default:
				dst = append(dst, c)
			}
		case unicode.Is(unicode.Cf, r):
		case unicode.Is(unicode.Mn, r) && len(dst) > 0 && strings.IndexByte("0123456789- ", dst[len(dst)-1]) >= 0:
			// A mark over a digit, dash or space does not change what is read.
		case unicode.Is(unicode.Pd, r), r == '\u2212', r == '\u2043', r == '\u02d7', r == '\u2796', r == '\ufe63':
			dst = append(dst, '-')
		case unicode.Is(unicode.Zs, r):
			dst = append(dst, ' ')
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\n')
		case unicode.Is(unicode.Nd, r):
			dst = append(dst, '0'+digitValue(r))
		default:
			dst = append(dst, src[i:i+size]...)
		}
		i += size
	}
	return dst
}

// digitValue of a decimal digit: Unicode keeps each script's digits as a
// run from zero to nine (checked in the tests for the whole table).
func digitValue(r rune) byte {
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return byte((r - rune(rg.Lo)) % 10)
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return byte((r - rune(rg.Lo)) % 10)
		}
	}
	return 0
}
