package sealed

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/emersion/go-message/charset"
)

// MIME limits: a message nested or split further than any mail program
// writes is refused rather than walked.
const (
	maxDepth = 50
	maxParts = 1000
)

// message is what the PDF shows of a message and what it embeds. Every
// slice points into the message as read, or is a part's decoded body.
type message struct {
	header   header
	texts    []string // the text parts a reader sees, in order, as UTF-8 (any line ends)
	hasText  bool
	files    []file
	partSeen int
}

// file is an attachment, decoded, with the name its sender gave it; or
// one of the files the PDF adds (message.eml, message.txt).
type file struct {
	name     string
	data     []byte
	deflated bool  // data is compressed (FlateDecode) ...
	origSize int64 // ... from this many bytes
}

// size is the file's size as it is saved.
func (f file) size() int {
	if f.deflated {
		return int(f.origSize)
	}
	return len(f.data)
}

// MalformedError is a message with a part that cannot be decoded (a
// damaged transfer encoding, a multipart without its boundaries, nesting
// deeper than mail programs write). It is refused: nothing is sent to
// anybody. Reason is in words a therapist can read and names no content.
type MalformedError struct {
	Reason string
	Err    error
}

func (e *MalformedError) Error() string { return e.Reason }
func (e *MalformedError) Unwrap() error { return e.Err }

func malformed(format string, args ...any) *MalformedError {
	return &MalformedError{Reason: fmt.Sprintf(format, args...)}
}

// parseMessage reads the MIME structure of raw.
func parseMessage(raw []byte) (*message, error) {
	h, bodyStart := splitHeader(raw)
	m := &message{header: h}
	if err := m.walk(h, raw[bodyStart:], 0, true); err != nil {
		return nil, err
	}
	return m, nil
}

// walk reads one entity: a multipart's parts, a text a reader sees (when
// wantText), or an attachment.
func (m *message) walk(h header, body []byte, depth int, wantText bool) error {
	m.partSeen++
	if m.partSeen > maxParts {
		return malformed("it has more than %d parts", maxParts)
	}
	mt, params := h.contentType()
	disp, dparams := h.disposition()
	name := h.fileName(params, dparams)
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		if depth >= maxDepth {
			return malformed("its parts are nested more than %d deep", maxDepth)
		}
		parts, err := splitMultipart(body, params["boundary"])
		if err != nil {
			return err
		}
		return m.multipart(mt, parts, depth, wantText)
	case (mt == "text/plain" || mt == "text/html") && disp != "attachment" && name == "":
		if !wantText {
			return nil
		}
		return m.text(h, mt, params, body)
	}
	data, err := decodeBody(h.transferEncoding(), body, m.partSeen)
	if err != nil {
		return err
	}
	if mt == "message/rfc822" || mt == "message/global" {
		if name == "" {
			inner, _ := splitHeader(data)
			name = decodeWords(inner.get("Subject"))
		}
		if name != "" && !strings.HasSuffix(strings.ToLower(name), ".eml") {
			name += ".eml"
		}
	}
	if name == "" {
		name = "part-" + strconv.Itoa(m.partSeen) + extensionFor(mt)
	}
	m.files = append(m.files, file{name: name, data: data})
	return nil
}

// multipart walks the parts of a multipart: of an alternative, the plain
// text version is the one read (else HTML, else the first that holds
// either), and the other versions give only their attachments; of a signed
// one, the signature is no attachment of the sender's.
func (m *message) multipart(mt string, parts [][]byte, depth int, wantText bool) error {
	headers := make([]header, len(parts))
	bodies := make([][]byte, len(parts))
	for i, p := range parts {
		h, start := splitHeader(p)
		headers[i], bodies[i] = h, p[start:]
	}
	chosen := -1
	if mt == "multipart/alternative" && wantText {
		chosen = preferredAlternative(headers)
	}
	for i := range parts {
		if mt == "multipart/signed" && i > 0 {
			break
		}
		want := wantText && (chosen < 0 || i == chosen)
		if err := m.walk(headers[i], bodies[i], depth+1, want); err != nil {
			return err
		}
	}
	return nil
}

// preferredAlternative is the version of an alternative that is read.
func preferredAlternative(headers []header) int {
	best, bestRank := -1, 0
	for i, h := range headers {
		mt, _ := h.contentType()
		rank := 0
		switch {
		case mt == "text/plain":
			rank = 3
		case mt == "text/html":
			rank = 2
		case strings.HasPrefix(mt, "multipart/"):
			rank = 1
		}
		if rank > bestRank {
			best, bestRank = i, rank
		}
	}
	if best < 0 {
		return 0
	}
	return best
}

// text adds a text part a reader sees to the message's text.
func (m *message) text(h header, mt string, params map[string]string, body []byte) error {
	data, err := decodeBody(h.transferEncoding(), body, m.partSeen)
	if err != nil {
		return err
	}
	s := toUTF8(data, params["charset"])
	switch {
	case mt == "text/html":
		s = htmlText([]byte(s))
	case strings.EqualFold(params["format"], "flowed"):
		s = unflow(normaliseLines(s), strings.EqualFold(params["delsp"], "yes"))
	}
	// Line ends stay as they came (CRLF, mostly): the page and message.txt
	// take them as they go, and the text is not copied for them.
	m.hasText = true
	if strings.TrimSpace(s) != "" {
		m.texts = append(m.texts, strings.TrimRight(s, " \r\n"))
	}
	return nil
}

// toUTF8 decodes text in its charset; a charset nobody knows, or bytes
// that are not what it says, show as U+FFFD where they cannot be read (the
// original is in message.eml). Text that is UTF-8 already is not copied.
func toUTF8(b []byte, label string) string {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "", "us-ascii", "ascii", "utf-8", "utf8":
		if utf8.Valid(b) {
			return unchangingString(b)
		}
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	r, err := charset.Reader(label, bytes.NewReader(b))
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	out, err := io.ReadAll(r)
	if err != nil && !utf8.Valid(out) {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return strings.ToValidUTF8(string(out), "\uFFFD")
}

// unchangingString is b as a string, without a copy: most mail is UTF-8
// text, and the largest a client is sent would otherwise be held twice.
// Sound only for bytes nothing writes to while the string is in use: b is
// the message as read, or a part's decoded body, and neither is written to
// after parsing (pdfcpu pads a stream in place, but only beyond its
// length); Seal keeps no string once it returns.
func unchangingString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// extensionFor is a file name extension for a part that has no name.
func extensionFor(mt string) string {
	switch mt {
	case "message/rfc822", "message/global":
		return ".eml"
	case "text/plain":
		return ".txt"
	case "text/html":
		return ".html"
	case "application/octet-stream":
		return ".bin"
	}
	if exts, err := mime.ExtensionsByType(mt); err == nil && len(exts) > 0 {
		return exts[0]
	}
	return ".bin"
}

// splitMultipart cuts a multipart body into its parts (RFC 2046 5.1.1): a
// delimiter is a line of "--" and the boundary, with optional white space;
// the line end before it belongs to it. Preamble and epilogue are dropped.
func splitMultipart(body []byte, boundary string) ([][]byte, error) {
	if boundary == "" {
		return nil, malformed("a multipart section of it has no boundary")
	}
	dash := []byte("--" + boundary)
	var parts [][]byte
	partStart := -1
	for pos := 0; pos < len(body); {
		end := bytes.IndexByte(body[pos:], '\n')
		next := len(body)
		if end >= 0 {
			next = pos + end + 1
		}
		line := body[pos:next]
		if bytes.HasPrefix(line, dash) {
			rest := bytes.TrimRight(line[len(dash):], " \t\r\n")
			closing := bytes.Equal(rest, []byte("--"))
			if len(rest) == 0 || closing {
				if partStart >= 0 {
					parts = append(parts, trimLineEnd(body[partStart:pos]))
				}
				if closing {
					if len(parts) == 0 {
						return nil, malformed("a multipart section of it has no parts")
					}
					return parts, nil
				}
				partStart = next
			}
		}
		pos = next
	}
	return nil, malformed("its parts cannot be told apart: a MIME boundary line is missing, wrong or damaged")
}

// trimLineEnd drops the line end that belongs to the next delimiter.
func trimLineEnd(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	return b
}

// safeFileName is name as a file can be called when it is saved: no path,
// no control characters, at most 200 bytes (its extension kept).
func safeFileName(name string) string {
	name = strings.Map(func(r rune) rune {
		switch {
		case r == '/' || r == '\\':
			return '_'
		case r < 0x20 || r == 0x7f:
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, "_"))
	name = strings.TrimSpace(name)
	name = strings.TrimLeft(name, ".")
	if name == "" {
		return "attachment"
	}
	if len(name) > 200 {
		ext := path.Ext(name)
		if len(ext) > 20 {
			ext = ""
		}
		cut := 200 - len(ext)
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut] + ext
	}
	return name
}
