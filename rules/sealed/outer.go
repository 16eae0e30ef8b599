package sealed

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"sync"
)

// outerFields are the original's fields the sealed message keeps, so that
// it threads, shows and is answered like the original. The Subject is not
// among them: it is readable by every server on the way.
var outerFields = []string{"From", "Reply-To", "To", "Cc", "Date", "Message-ID", "In-Reply-To", "References"}

// writeOuterStart writes the sealed message up to the PDF's base64: the
// header, the text and HTML bodies, and the PDF part's header. It returns
// the outer boundary, which the caller closes.
func writeOuterStart(w io.Writer, h header, o Options) (string, error) {
	bw := bufio.NewWriter(w)
	for _, name := range outerFields {
		if raw := h.raw(name); raw != nil {
			bw.Write(crlfLines(raw))
		}
	}
	subject := oneLine(o.Subject)
	if subject == "" {
		subject = "Secure message"
		if p := oneLine(o.PracticeName); p != "" {
			subject += " from " + p
		}
	}
	fmt.Fprintf(bw, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	outer, alt := newBoundary(), newBoundary()
	fmt.Fprintf(bw, "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", outer)
	fmt.Fprintf(bw, "--%s\r\n", outer)
	if o.HTML != "" {
		fmt.Fprintf(bw, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n--%s\r\n", alt, alt)
	}
	if err := writeTextPart(bw, "text/plain", o.Text); err != nil {
		return "", err
	}
	if o.HTML != "" {
		fmt.Fprintf(bw, "\r\n--%s\r\n", alt)
		if err := writeTextPart(bw, "text/html", o.HTML); err != nil {
			return "", err
		}
		fmt.Fprintf(bw, "\r\n--%s--\r\n", alt)
	}
	fmt.Fprintf(bw, "\r\n--%s\r\nContent-Type: application/pdf; name=\"message.pdf\"\r\n"+
		"Content-Disposition: attachment; filename=\"message.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", outer)
	if err := bw.Flush(); err != nil {
		return "", fmt.Errorf("sealed: write the message: %w", err)
	}
	return outer, nil
}

// writeTextPart writes a UTF-8 part, quoted-printable.
func writeTextPart(w io.Writer, mediaType, text string) error {
	fmt.Fprintf(w, "Content-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", mediaType)
	qp := quotedprintable.NewWriter(w)
	if _, err := io.WriteString(qp, normaliseLines(strings.ToValidUTF8(text, "\uFFFD"))); err != nil {
		return fmt.Errorf("sealed: write the message: %w", err)
	}
	if err := qp.Close(); err != nil {
		return fmt.Errorf("sealed: write the message: %w", err)
	}
	return nil
}

// crlfLines is a raw header field with CRLF line ends, and one at its end.
func crlfLines(raw []byte) []byte {
	raw = bytes.TrimRight(raw, "\r\n")
	if bytes.IndexByte(raw, '\r') < 0 && bytes.IndexByte(raw, '\n') < 0 {
		return append(raw[:len(raw):len(raw)], '\r', '\n')
	}
	lines := bytes.Split(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"))
	return append(bytes.Join(lines, []byte("\r\n")), '\r', '\n')
}

// oneLine is s without line breaks and runs of white space: a header
// field's text must not end the field.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// newBoundary is a boundary no content holds: random, and with "=_",
// which neither base64 nor quoted-printable writes.
func newBoundary() string {
	b := make([]byte, 15)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24 and later)
	return "=_sealed_" + hex.EncodeToString(b)
}

// base64Lines writes base64 in lines of 76 characters, as MIME wants.
type base64Lines struct {
	w   io.Writer
	enc io.WriteCloser
	lb  *lineBreaker
}

// lineBuffers are the buffers the PDF's base64 goes out through, reused:
// one is about the size of a short message's whole PDF.
var lineBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

func newBase64Lines(w io.Writer) *base64Lines {
	bw := lineBuffers.Get().(*bufio.Writer)
	bw.Reset(w)
	lb := &lineBreaker{w: bw}
	return &base64Lines{w: w, enc: base64.NewEncoder(base64.StdEncoding, lb), lb: lb}
}

func (b *base64Lines) Write(p []byte) (int, error) { return b.enc.Write(p) }

// Close writes what is left and ends the last line.
func (b *base64Lines) Close() error {
	if err := b.enc.Close(); err != nil {
		return err
	}
	if b.lb.col > 0 {
		if _, err := b.lb.w.WriteString("\r\n"); err != nil {
			return err
		}
	}
	err := b.lb.w.Flush()
	b.lb.w.Reset(nil) // holds no writer of this message
	lineBuffers.Put(b.lb.w)
	b.lb.w = nil
	return err
}

// lineBreaker breaks what is written to it into lines of 76 octets.
type lineBreaker struct {
	w   *bufio.Writer
	col int
}

func (l *lineBreaker) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(76-l.col, len(p))
		if _, err := l.w.Write(p[:k]); err != nil {
			return n, err
		}
		n += k
		l.col += k
		p = p[k:]
		if l.col == 76 {
			if _, err := l.w.WriteString("\r\n"); err != nil {
				return n, err
			}
			l.col = 0
		}
	}
	return n, nil
}
