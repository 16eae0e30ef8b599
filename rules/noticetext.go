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
// transform needs.
type noticeText struct {
	text   string // as configured, lines joined by \n
	plain  string // wrapped at 76 columns, CRLF line ends
	flowed string // RFC 3676 format=flowed: soft breaks end in a space
	html   string // an ASCII-only HTML block (non-ASCII as character references)
	norm   string // whitespace collapsed: to see whether a message already ends with it
}

const htmlNoticeMarker = "data-sealpost-notice"

func newNoticeText(s string) *noticeText {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
	n := &noticeText{text: s, norm: textutil.OneLine(s)}
	var plain, flowed []string
	for _, para := range strings.Split(s, "\n") {
		words := strings.Fields(para)
		line := ""
		var lines []string
		for _, w := range words {
			if line != "" && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) > 72 {
				lines = append(lines, line)
				line = w
				continue
			}
			if line != "" {
				line += " "
			}
			line += w
		}
		lines = append(lines, line)
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
	n.plain = strings.Join(plain, "\r\n")
	n.flowed = strings.Join(flowed, "\r\n")
	var h strings.Builder
	h.WriteString(`<div class="sealpost-notice" ` + htmlNoticeMarker + `="1" style="margin-top:1em;font-size:smaller;color:#555555"><hr>`)
	for i, para := range strings.Split(s, "\n") {
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
	n.html = h.String()
	return n
}

// writeNoticePart writes a complete text/plain part holding the notice.
func (t *transformer) writeNoticePart(w io.Writer) {
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
