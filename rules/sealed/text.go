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
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = norm.NFC.String(s)
	var b strings.Builder
	b.Grow(len(s))
	missing, prevMissing := false, false
	for _, r := range s {
		if r >= 0x20 && r < 0x7f { // what most mail is: the font has it all
			b.WriteByte(byte(r))
			prevMissing = false
			continue
		}
		switch {
		case r == '\n':
			b.WriteByte('\n')
			prevMissing = false
		case r == '\t':
			b.WriteString("    ")
			prevMissing = false
		case r < 0x20 || (r >= 0x7f && r < 0xa0), unicode.Is(unicode.Cf, r), unicode.Is(unicode.Mn, r) && !f.has(r),
			r >= 0xfe00 && r <= 0xfe0f:
			// Controls, direction marks, joiners, variation selectors and
			// stray accents: nothing a reader sees on its own.
		case f.has(r):
			b.WriteRune(r)
			prevMissing = false
		case unicode.IsSpace(r):
			b.WriteByte(' ')
			prevMissing = false
		default:
			missing = true
			if !prevMissing {
				b.WriteRune(missingMark)
			}
			prevMissing = true
		}
	}
	return b.String(), missing
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
