package sealed

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"strconv"
)

// padSpare is the room left after a buffer pdfcpu encrypts: it pads a
// stream in place (append) before encrypting it, and with this room it
// need not copy it first.
const padSpare = 16

// decodeBody undoes a part's transfer encoding. A body that needs none is
// returned as it is, capped at its length, so that nothing appended to it
// can write into the message around it. A decoded one gets a buffer of its
// own, allocated once at its largest size.
func decodeBody(cte string, body []byte, part int) ([]byte, error) {
	switch cte {
	case "", "7bit", "8bit", "binary":
		return body[:len(body):len(body)], nil
	case "base64":
		out, err := decodeBase64(body)
		if err != nil {
			return nil, &MalformedError{Reason: "the base64 encoding of its part " + strconv.Itoa(part) + " is damaged", Err: err}
		}
		return out, nil
	case "quoted-printable":
		out := make([]byte, 0, len(body)+padSpare)
		w := bytes.NewBuffer(out)
		if _, err := io.Copy(w, quotedprintable.NewReader(bytes.NewReader(body))); err != nil {
			return nil, &MalformedError{Reason: "the quoted-printable encoding of its part " + strconv.Itoa(part) + " is damaged", Err: err}
		}
		return w.Bytes(), nil
	}
	return nil, malformed("its part %d has a transfer encoding nobody can read", part)
}

// errBase64 is base64 with characters outside its alphabet, or after its end.
var errBase64 = base64.CorruptInputError(0)

// decodeBase64 decodes base64 with line breaks and other white space in it,
// and with or without its padding, in one pass into one buffer.
func decodeBase64(src []byte) ([]byte, error) {
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(src))+padSpare)
	n := 0
	var chunk [4096]byte
	k := 0
	ended := false
	for _, c := range src {
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			continue
		case c == '=':
			ended = true
			continue
		case ended:
			return nil, errBase64
		case !isBase64Char(c):
			return nil, errBase64
		}
		chunk[k] = c
		k++
		if k == len(chunk) {
			m, err := base64.RawStdEncoding.Decode(out[n:], chunk[:k])
			if err != nil {
				return nil, err
			}
			n += m
			k = 0
		}
	}
	if k%4 == 1 {
		return nil, errBase64
	}
	m, err := base64.RawStdEncoding.Decode(out[n:], chunk[:k])
	if err != nil {
		return nil, err
	}
	n += m
	return out[:n], nil
}

func isBase64Char(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
}
