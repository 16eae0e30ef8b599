package sealed

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// missingMark is drawn for a run of characters the font lacks (U+25A1
// WHITE SQUARE, which Go Regular has).
const missingMark = '□'

// missingNotice is the box at the top of a page whose text has characters
// the PDF cannot show.
const missingNotice = "This message has characters that this PDF cannot show (for example Hebrew, Arabic, " +
	"Chinese, Japanese, Korean or emoji). They are marked □ below. The complete text is in the " +
	"attached file message.txt, and the original e-mail in message.eml: open the attachments " +
	"(paperclip) panel of your PDF reader."

// cleanText is text as the page can show it: composed (NFC, so that a
// letter and its accent become the one character the font has), tabs as
// spaces, control and invisible formatting characters gone, and each run of
// characters the font lacks as one missingMark. It reports whether any were
// missing.
func cleanText(f *pageFont, s string) (string, bool) {
	c := cleaner{f: f}
	out := c.clean(s)
	return out, c.missing
}

// cleaner cleans a text in pieces (nextPiece) as cleanText cleans it
// whole: a run of missing characters across two pieces is one mark.
type cleaner struct {
	f           *pageFont
	missing     bool // a character the font lacks was met
	prevMissing bool // the last character was one
}

func (c *cleaner) clean(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = norm.NFC.String(s)
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r >= 0x20 && r < 0x7f { // what most mail is: the font has it all
			b.WriteByte(byte(r))
			c.prevMissing = false
			continue
		}
		switch c.f.fate(r) {
		case kept:
			b.WriteRune(r)
			c.prevMissing = false
		case asNewline:
			b.WriteByte('\n')
			c.prevMissing = false
		case asTab:
			b.WriteString("    ")
			c.prevMissing = false
		case asSpace:
			b.WriteByte(' ')
			c.prevMissing = false
		case lacking:
			c.missing = true
			if !c.prevMissing {
				b.WriteRune(missingMark)
			}
			c.prevMissing = true
		}
	}
	return b.String()
}

// runeFate is what cleanText makes of a character.
type runeFate int

const (
	kept runeFate = iota
	dropped
	asNewline
	asTab
	asSpace
	lacking
)

func (f *pageFont) fate(r rune) runeFate {
	switch {
	case r == '\n':
		return asNewline
	case r == '\t':
		return asTab
	case r < 0x20 || (r >= 0x7f && r < 0xa0), unicode.Is(unicode.Cf, r), unicode.Is(unicode.Mn, r) && !f.has(r),
		r >= 0xfe00 && r <= 0xfe0f:
		// Controls, direction marks, joiners, variation selectors and
		// stray accents: nothing a reader sees on its own.
		return dropped
	case f.has(r):
		return kept
	case unicode.IsSpace(r):
		return asSpace
	}
	return lacking
}

// lacksGlyphs reports whether cleanText would mark a character of s as
// missing, a piece at a time and without building the cleaned text: s may
// be a whole message's text.
func lacksGlyphs(f *pageFont, s string) bool {
	for s != "" {
		var piece string
		piece, s = nextPiece(s, pieceBytes)
		if isASCII(piece) {
			continue
		}
		if !utf8.ValidString(piece) || !norm.NFC.IsNormalString(piece) {
			if _, missing := cleanText(f, piece); missing {
				return true
			}
			continue
		}
		for _, r := range piece {
			if r >= 0x80 && f.fate(r) == lacking {
				return true
			}
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// pieceBytes bounds the text cleaned and wrapped at a time, so that a
// paragraph of megabytes costs no more memory than a page's worth.
const pieceBytes = 16 << 10

// nextPiece cuts about size bytes off the front of s where cleaning the
// two parts apart gives what cleaning them together would: before a space
// (no character composes with one), else, in a run without spaces, at the
// next boundary of NFC after size bytes (a character that composes with
// nothing before it).
func nextPiece(s string, size int) (piece, rest string) {
	if len(s) <= size {
		return s, ""
	}
	if i := strings.LastIndexByte(s[:size], ' '); i > 0 {
		return s[:i], s[i:]
	}
	cut := size
	for cut < len(s) && !utf8.RuneStart(s[cut]) {
		cut++
	}
	// Looked for a few characters ahead only: a text of nothing but
	// combining marks would otherwise be read to its end for each piece.
	ahead := s[cut:min(cut+64, len(s))]
	switch i := norm.NFC.FirstBoundaryInString(ahead); {
	case i >= 0:
		cut += i
	case len(ahead) == len(s)-cut: // no boundary before the end
		cut = len(s)
	}
	return s[:cut], s[cut:]
}

// normaliseLines makes CRLF and lone CR line ends LF.
func normaliseLines(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

// unflow joins the lines of a format=flowed text (RFC 3676) into the
// paragraphs they are: a line ending in a space goes on in the next one.
// Quoted lines keep their quote marks.
func unflow(s string, delSp bool) string {
	lines := strings.Split(s, "\n")
	var b strings.Builder
	b.Grow(len(s))
	for i, l := range lines {
		if l == "-- " { // the signature separator is never soft
			b.WriteString(l)
		} else {
			l = strings.TrimPrefix(l, " ") // space-stuffing
			if strings.HasSuffix(l, " ") && i < len(lines)-1 {
				if delSp {
					l = l[:len(l)-1]
				}
				b.WriteString(l)
				continue
			}
			b.WriteString(l)
		}
		if i < len(lines)-1 {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// splitNotice finds the practice's notice at the end of body (where the
// relay appended it, wrapped and spaced its own way) and returns the body
// without it, so that the page shows the notice once, in its own place.
// found is false when body does not end with it.
func splitNotice(body, notice string) (rest string, found bool) {
	want := strings.Fields(notice)
	if len(want) == 0 {
		return body, false
	}
	end := len(body)
	for i := len(want) - 1; i >= 0; i-- {
		trimmed := strings.TrimRightFunc(body[:end], unicode.IsSpace)
		if !strings.HasSuffix(trimmed, want[i]) {
			return body, false
		}
		end = len(trimmed) - len(want[i])
		if i > 0 && (end == 0 || !isSpaceBefore(body[:end])) {
			return body, false
		}
	}
	if end > 0 && !isSpaceBefore(body[:end]) {
		return body, false
	}
	return strings.TrimRightFunc(body[:end], unicode.IsSpace), true
}

func isSpaceBefore(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return unicode.IsSpace(r)
}
