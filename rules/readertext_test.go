package rules

import (
	"bytes"
	"errors"
	"testing"
	"unicode"
)

func TestReaderText(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain ASCII", "plain ASCII"},
		{"１２３－４５", "123-45"},
		{"a\u00a0b\u2009c\u3000d", "a b c d"},
		{"a\u200bb\u00adc\ufeffd\u200de", "abcde"},
		{"\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63", "---------"},
		{"١٢٣ ۴۵ ०१२", "123 45 012"},
		{"ﬁne", "fine"},
		{"a\u2028b", "a\nb"},
		{"caf\xe9 123", "caf\xe9 123"}, // Latin-1 left as it is
	} {
		got, err := readerText([]byte(tt.in))
		if err != nil || string(got) != tt.want {
			t.Errorf("readerText(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	// Text that grows without bound under NFKC is refused, not expanded.
	if _, err := readerText(bytes.Repeat([]byte("\ufdfa"), 10000)); !errors.Is(err, errTooMuchToScan) {
		t.Errorf("U+FDFA ten thousand times: %v, want errTooMuchToScan", err)
	}
}

// TestDigitValues: every decimal digit in Unicode maps to its value.
func TestDigitValues(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !unicode.Is(unicode.Nd, r) {
			continue
		}
		// Each run of digits starts at a zero: the digit ten places on
		// (or back) has the same value, and the first of a run is zero.
		want := digitValue(r)
		if !unicode.Is(unicode.Nd, r-rune(want)) || (want > 0 && !unicode.Is(unicode.Nd, r-1)) {
			t.Fatalf("U+%04X: value %d, but U+%04X is no digit", r, want, r-rune(want))
		}
		if want == 0 && unicode.Is(unicode.Nd, r-1) && digitValue(r-1) != 9 {
			t.Fatalf("U+%04X is a zero after U+%04X, whose value is %d", r, r-1, digitValue(r-1))
		}
	}
}
