package sealed

import (
	"io"
	"strings"
)

// noTextNotice stands in the page for a message without text.
const noTextNotice = "(This message has no text. Open the attachments (paperclip) panel of your PDF reader for its files.)"

// compose lays the message out on pages and lists the files the PDF
// embeds: message.eml (raw, byte for byte), message.txt (the header and
// text in UTF-8, compressed), then every attachment. The text is read
// where it lies, never copied whole: message.txt is compressed as it is
// written, and the pages take what fits on them.
func compose(f *pageFont, m *message, raw []byte, o Options) (*pdfDoc, error) {
	h := m.header
	fields := [][2]string{
		{"From", decodeWords(h.get("From"))},
		{"To", decodeWords(h.get("To"))},
		{"Cc", decodeWords(h.get("Cc"))},
		{"Date", strings.Join(strings.Fields(h.get("Date")), " ")},
		{"Subject", decodeWords(h.get("Subject"))},
	}
	notice := strings.TrimSpace(normaliseLines(o.Notice))
	rest := withoutNotice(m.texts, notice)
	txt, err := messageText(fields, rest, notice)
	if err != nil {
		return nil, err
	}
	files := make([]file, 0, len(m.files)+2)
	files = append(files, file{name: "message.eml", data: raw}, txt)
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
		listed = append(listed, clean(names[i])+" ("+fileSize(files[i].size())+")")
	}
	if blank(rest) {
		rest = []string{noTextNotice}
	}
	for _, t := range rest {
		missing = missing || lacksGlyphs(f, t)
	}
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
	for i, t := range rest {
		if i > 0 {
			l.paragraphs("", bodySize, bodyLead, 0) // the blank line between two text parts
		}
		l.paragraphs(t, bodySize, bodyLead, 0)
	}
	if notice != "" && l.room(3*noticeLead) {
		l.y -= 10
		l.rule(l.y)
		l.y -= 8
		l.paragraphs(notice, noticeSize, noticeLead, 0.33)
	}
	pages, footers, err := l.finish()
	if err != nil {
		return nil, err
	}
	return &pdfDoc{font: f, pages: pages, footers: footers, used: l.used, files: files}, nil
}

// withoutNotice is the message's text parts without the practice's notice
// at the end of the last, where the relay appended it, so that the page
// shows the notice once, in its own place.
func withoutNotice(texts []string, notice string) []string {
	if len(texts) == 0 {
		return nil
	}
	rest := append([]string(nil), texts...)
	last, found := splitNotice(rest[len(rest)-1], notice)
	if !found {
		return rest
	}
	if rest[len(rest)-1] = last; last == "" {
		rest = rest[:len(rest)-1]
	}
	return rest
}

// blank: the texts hold nothing but white space.
func blank(texts []string) bool {
	for _, t := range texts {
		if strings.TrimSpace(t) != "" {
			return false
		}
	}
	return true
}

// messageText is message.txt: the header fields, the text (its parts apart
// by a blank line) and the notice, in UTF-8 with LF line ends, compressed.
func messageText(fields [][2]string, texts []string, notice string) (file, error) {
	var size int64
	data, err := deflate(func(w io.Writer) error {
		cw := &countingWriter{w: w}
		lw := newLFWriter(cw)
		for _, fl := range fields {
			if fl[1] != "" {
				if err := lw.WriteString(fl[0] + ": " + fl[1] + "\n"); err != nil {
					return err
				}
			}
		}
		parts := []string{"\n"}
		for i, t := range texts {
			if i > 0 {
				parts = append(parts, "\n\n")
			}
			parts = append(parts, t)
		}
		parts = append(parts, "\n")
		if notice != "" {
			parts = append(parts, "\n"+notice+"\n")
		}
		for _, p := range parts {
			if err := lw.WriteString(p); err != nil {
				return err
			}
		}
		err := lw.Flush()
		size = cw.n
		return err
	})
	if err != nil {
		return file{}, err
	}
	return file{name: "message.txt", data: data, deflated: true, origSize: size}, nil
}
