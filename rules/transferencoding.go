package rules

import (
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// Content-Transfer-Encoding (RFC 2045 6): the decoders and encoders the
// transforms and checks use, by the encoding's lower-case name.

// decodeCTE undoes a text part's transfer encoding; an encoding nobody
// knows is a mimeError.
func decodeCTE(r io.Reader, cte string) (io.Reader, error) {
	switch cte {
	case "quoted-printable":
		return quotedprintable.NewReader(r), nil
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &stripSpace{r: r}), nil
	case "", "7bit", "8bit", "binary":
		return r, nil
	}
	return nil, &mimeError{"a text part has a transfer encoding nobody can read"}
}

// encodeCTE wraps w in the encoder for cte.
func encodeCTE(w io.Writer, cte string) (io.Writer, func() error) {
	switch cte {
	case "quoted-printable":
		qp := quotedprintable.NewWriter(w)
		return qp, qp.Close
	case "base64":
		b := newBase64Lines(w)
		return b, b.Close
	}
	return w, func() error { return nil }
}

// base64Lines writes base64 in lines of 76 characters, as MIME wants.
type base64Lines struct {
	w    io.Writer
	enc  io.WriteCloser
	line *lineBreaker
}

func newBase64Lines(w io.Writer) *base64Lines {
	lb := &lineBreaker{w: w}
	return &base64Lines{w: w, enc: base64.NewEncoder(base64.StdEncoding, lb), line: lb}
}

func (b *base64Lines) Write(p []byte) (int, error) { return b.enc.Write(p) }

// Close writes what is left and ends the last line.
func (b *base64Lines) Close() error {
	if err := b.enc.Close(); err != nil {
		return err
	}
	if b.line.col > 0 {
		_, err := io.WriteString(b.w, "\r\n")
		return err
	}
	return nil
}

// lineBreaker breaks what is written to it into lines of 76 octets.
type lineBreaker struct {
	w   io.Writer
	col int
}

func (l *lineBreaker) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		room := 76 - l.col
		chunk := p
		if len(chunk) > room {
			chunk = chunk[:room]
		}
		if _, err := l.w.Write(chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		l.col += len(chunk)
		p = p[len(chunk):]
		if l.col == 76 {
			if _, err := io.WriteString(l.w, "\r\n"); err != nil {
				return n, err
			}
			l.col = 0
		}
	}
	return n, nil
}

// stripSpace drops the line breaks and blanks inside base64 text.
type stripSpace struct{ r io.Reader }

func (s *stripSpace) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// transferEncoding is an entity's Content-Transfer-Encoding, lower case
// ("" when it has none).
func transferEncoding(h textproto.Header) string {
	return strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
}

// isIdentityEncoding: 7bit, 8bit, binary or none (RFC 2045 6.2), the
// transfer encodings that leave lines as they are.
func isIdentityEncoding(cte string) bool {
	return cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"
}
