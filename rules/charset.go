package rules

import (
	"mime"
	"strings"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
)

// lookupCharset finds a text part's charset by its label ("" is US-ASCII,
// RFC 2045 5.2): nil for US-ASCII and UTF-8, which need no encoder; false
// when nobody knows the label.
func lookupCharset(label string) (encoding.Encoding, bool) {
	if label == "" {
		label = "us-ascii"
	}
	switch strings.ToLower(label) {
	case "us-ascii", "ascii", "utf-8", "utf8":
		return nil, true
	}
	enc, err := htmlindex.Get(label)
	if err != nil {
		return nil, false
	}
	return enc, true
}

// asciiCompatible: the charset writes ASCII as ASCII, so the notice's ASCII
// (the HTML block, line ends) can be added to a part's text without
// decoding it.
func asciiCompatible(label string) bool {
	l := strings.ToLower(label)
	return !strings.HasPrefix(l, "utf-16") && !strings.HasPrefix(l, "utf-32") && !strings.HasPrefix(l, "utf-7") &&
		!strings.HasPrefix(l, "iso-2022") && !strings.HasPrefix(l, "hz")
}

// encodeInCharset writes s in the charset labelled, or reports that the
// charset cannot hold it or is not one the notice can be added to.
func encodeInCharset(s, label string) ([]byte, bool) {
	if isASCII(s) {
		return []byte(s), asciiCompatible(label)
	}
	enc, ok := lookupCharset(label)
	if !ok || !asciiCompatible(label) {
		return nil, false
	}
	if enc == nil {
		if l := strings.ToLower(label); l == "utf-8" || l == "utf8" {
			return []byte(s), true
		}
		return nil, false // us-ascii cannot hold it
	}
	b, err := enc.NewEncoder().String(s)
	if err != nil {
		return nil, false
	}
	return []byte(b), true
}

func isASCII[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// wordDecoder decodes encoded words in every charset go-message knows.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decodeHeaderText is a header field's text with its encoded words (RFC
// 2047) decoded, as the recipient's mail program shows it.
func decodeHeaderText(s string) string {
	d, err := wordDecoder.DecodeHeader(s)
	if err == nil {
		return d
	}
	// One word in an unknown charset must not leave the others encoded
	// (and unread by the content rules): decode word by word.
	var b strings.Builder
	prevEncoded := false
	for i, w := range strings.Fields(s) {
		d, err := wordDecoder.Decode(w)
		encoded := err == nil
		if !encoded {
			d = w
		}
		if i > 0 && !(encoded && prevEncoded) { // adjacent encoded words join
			b.WriteByte(' ')
		}
		b.WriteString(d)
		prevEncoded = encoded
	}
	return b.String()
}
