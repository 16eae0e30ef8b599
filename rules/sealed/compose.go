package sealed

import (
	"strings"
)

// noTextNotice stands in the page for a message without text.
const noTextNotice = "(This message has no text. Open the attachments (paperclip) panel of your PDF reader for its files.)"

// compose lays the message out on pages and lists the files the PDF
// embeds: message.eml (raw, byte for byte), message.txt (the header and
// text in UTF-8), then every attachment.
func compose(f *pageFont, m *message, raw []byte, o Options) *pdfDoc {
	h := m.header
	fields := [][2]string{
		{"From", decodeWords(h.get("From"))},
		{"To", decodeWords(h.get("To"))},
		{"Cc", decodeWords(h.get("Cc"))},
		{"Date", strings.Join(strings.Fields(h.get("Date")), " ")},
		{"Subject", decodeWords(h.get("Subject"))},
	}
	body := normaliseLines(strings.Join(m.texts, "\n\n"))
	notice := strings.TrimSpace(normaliseLines(o.Notice))
	rest, _ := splitNotice(body, notice)

	var txt strings.Builder
	for _, fl := range fields {
		if fl[1] != "" {
			txt.WriteString(fl[0] + ": " + fl[1] + "\n")
		}
	}
	txt.WriteString("\n" + rest + "\n")
	if notice != "" {
		txt.WriteString("\n" + notice + "\n")
	}
	files := make([]file, 0, len(m.files)+2)
	files = append(files, file{name: "message.eml", data: raw}, file{name: "message.txt", data: []byte(txt.String())})
	files = append(files, m.files...)

	missing := false
	clean := func(s string) string {
		c, miss := cleanText(f, s)
		missing = missing || miss
		return c
	}
	for i := range fields {
		fields[i][1] = clean(fields[i][1])
	}
	names := uniqueNames(files)
	var listed []string
	for i := 2; i < len(files); i++ {
		listed = append(listed, clean(names[i])+" ("+fileSize(len(files[i].data))+")")
	}
	if strings.TrimSpace(rest) == "" {
		rest = noTextNotice
	}
	rest = clean(rest)
	notice = clean(notice)
	practice := clean(strings.TrimSpace(o.PracticeName))

	l := newLayout(f)
	if practice != "" {
		l.paragraphs("Secure message from "+practice, headSize, headLead, 0.4)
		l.y -= 6
	}
	if missing {
		l.warning(missingNotice)
	}
	for _, fl := range fields {
		if fl[1] != "" {
			l.field(fl[0], fl[1])
		}
	}
	if len(listed) > 0 {
		l.field("Files", strings.Join(listed, "\n")+"\n(in the attachments panel of your PDF reader; "+
			"the original e-mail is message.eml)")
	}
	l.y -= 4
	l.rule(l.y)
	l.y -= 12
	l.paragraphs(rest, bodySize, bodyLead, 0)
	if notice != "" && l.room(3*noticeLead) {
		l.y -= 10
		l.rule(l.y)
		l.y -= 8
		l.paragraphs(notice, noticeSize, noticeLead, 0.33)
	}
	return &pdfDoc{font: f, pages: l.finish(), used: l.used, files: files}
}
