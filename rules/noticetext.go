package rules

import (
	"fmt"
	"html"
	"io"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"

	"github.com/sealpost/sealpost/internal/textutil"
)

// noticeText holds the practice's confidentiality notice in the forms the
// transform writes it in, and in the form it is recognised by.
type noticeText struct {
	plain  string // wrapped at 72 characters, CRLF line ends
	flowed string // RFC 3676 format=flowed: soft breaks end in a space
	html   string // an ASCII-only HTML block (non-ASCII as character references)
	norm   string // whitespace collapsed: to see whether a message already ends with it
}

// htmlNoticeMarker is the attribute of the HTML notice block: an HTML part
// that holds it has the notice already.
const htmlNoticeMarker = "data-sealpost-notice"

// maxNoticeLine is where the notice's text forms wrap.
const maxNoticeLine = 72

// newNoticeText makes the forms of the notice as configured; line breaks
// in it start paragraphs.
func newNoticeText(s string) *noticeText {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
	paras := strings.Split(s, "\n")
	var plain, flowed []string
	for _, para := range paras {
		lines := wrapWords(para, maxNoticeLine)
		plain = append(plain, lines...)
		for i, l := range lines {
			if strings.HasPrefix(l, " ") || strings.HasPrefix(l, ">") || strings.HasPrefix(l, "From ") {
				l = " " + l // space-stuffing (RFC 3676 4.4)
			}
			if i < len(lines)-1 {
				l += " " // soft break: the paragraph goes on
			}
			flowed = append(flowed, l)
		}
	}
	return &noticeText{
		plain:  strings.Join(plain, "\r\n"),
		flowed: strings.Join(flowed, "\r\n"),
		html:   htmlNoticeBlock(paras),
		norm:   textutil.OneLine(s),
	}
}

// wrapWords breaks a paragraph into lines of at most width characters
// where its words allow (a longer word has a line of its own).
func wrapWords(para string, width int) []string {
	line := ""
	var lines []string
	for _, w := range strings.Fields(para) {
		if line != "" && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) > width {
			lines = append(lines, line)
			line = w
			continue
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}

// htmlNoticeBlock is the notice as a block of HTML in ASCII (other
// characters as character references), which any ASCII-compatible charset
// holds as it is.
func htmlNoticeBlock(paras []string) string {
	var h strings.Builder
	h.WriteString(`<div class="sealpost-notice" ` + htmlNoticeMarker + `="1" style="margin-top:1em;font-size:smaller;color:#555555"><hr>`)
	for i, para := range paras {
		if i > 0 {
			h.WriteString("<br>")
		}
		for _, r := range html.EscapeString(para) {
			if r < 0x80 {
				h.WriteRune(r)
			} else {
				fmt.Fprintf(&h, "&#%d;", r)
			}
		}
	}
	h.WriteString("</div>")
	return h.String()
}

// forTextPart is the notice's form for a text/plain part with these
// Content-Type parameters.
func (n *noticeText) forTextPart(params map[string]string) string {
	if strings.EqualFold(params["format"], "flowed") {
		return n.flowed
	}
	return n.plain
}

// writeNoticePart writes a complete text/plain part holding the notice.
func (t *noticeTransform) writeNoticePart(w io.Writer) {
	if isASCII(t.n.plain) {
		io.WriteString(w, "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
		io.WriteString(w, t.n.plain+"\r\n")
		return
	}
	io.WriteString(w, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(w)
	io.WriteString(qp, t.n.plain+"\r\n")
	qp.Close()
}
