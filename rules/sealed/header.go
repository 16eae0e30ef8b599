package sealed

import (
	"bytes"
	"mime"
	"strings"

	"github.com/emersion/go-message/charset"
)

// field is one header field: its name, its lines as they came (folded, with
// their line ends) and its value unfolded.
type field struct {
	name  string
	raw   []byte
	value string
}

type header []field

// get is the value of the first field named name ("" if none).
func (h header) get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// raw is the first field named name as it came, or nil.
func (h header) raw(name string) []byte {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return f.raw
		}
	}
	return nil
}

// splitHeader reads the header section at the start of b, up to the blank
// line, and returns it and where the body starts. Lines that are no field
// (no colon, or before the first field) are passed over, as mail programs
// do; a section without a blank line is all header.
func splitHeader(b []byte) (header, int) {
	var h header
	pos, start := 0, -1 // start: where the field being read began
	for pos < len(b) {
		end := bytes.IndexByte(b[pos:], '\n')
		next := len(b)
		if end >= 0 {
			next = pos + end + 1
		}
		line := b[pos:next]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return h, next
		}
		if line[0] == ' ' || line[0] == '\t' {
			if start >= 0 {
				f := &h[len(h)-1]
				f.raw = b[start:next]
				f.value += string(bytes.TrimRight(line, "\r\n"))
			}
			pos = next
			continue
		}
		start = -1
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && len(bytes.TrimSpace(name)) > 0 {
			h = append(h, field{
				name:  string(bytes.TrimSpace(name)),
				raw:   line,
				value: string(bytes.TrimRight(value, "\r\n")),
			})
			start = pos
		}
		pos = next
	}
	return h, len(b)
}

// wordDecoder decodes encoded words (RFC 2047) in every charset go-message knows.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decodeWords is a field's text as a mail program shows it: encoded words
// decoded, folding gone.
func decodeWords(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if !strings.Contains(s, "=?") {
		return s
	}
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// contentType is the part's media type, lower case, and its parameters;
// a missing or unreadable one is text/plain (RFC 2045 5.2).
func (h header) contentType() (string, map[string]string) {
	v := h.get("Content-Type")
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{}
	}
	mt, params, err := mime.ParseMediaType(v)
	if mt == "" || (err != nil && err != mime.ErrInvalidMediaParameter) {
		return "text/plain", map[string]string{}
	}
	if params == nil {
		params = map[string]string{}
	}
	return strings.ToLower(mt), params
}

// disposition is the part's Content-Disposition, lower case, and its
// parameters.
func (h header) disposition() (string, map[string]string) {
	v := h.get("Content-Disposition")
	d, params, err := mime.ParseMediaType(v)
	if err != nil && err != mime.ErrInvalidMediaParameter {
		return "", map[string]string{}
	}
	if params == nil {
		params = map[string]string{}
	}
	return strings.ToLower(d), params
}

// fileName is the name a sender gave an attachment (Content-Disposition's
// filename, else Content-Type's name; RFC 2231 and the encoded words some
// programs put there decoded), or "".
func (h header) fileName(ctParams, cdParams map[string]string) string {
	name := cdParams["filename"]
	if name == "" {
		name = ctParams["name"]
	}
	return decodeWords(name)
}

// transferEncoding is the part's Content-Transfer-Encoding, lower case.
func (h header) transferEncoding() string {
	return strings.ToLower(strings.TrimSpace(h.get("Content-Transfer-Encoding")))
}
