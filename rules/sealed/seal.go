package sealed

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/xdg-go/stringprep"
)

// Options say what Seal writes around the message.
type Options struct {
	Passphrase   string // prepared (CheckPassphrase); the PDF's user password
	PracticeName string // named at the top of the PDF's first page
	Subject      string // the outer message's Subject, instead of the real one
	Text         string // the outer message's text/plain body: how to open the PDF
	HTML         string // the same as text/html; "" for a text/plain body only
	Notice       string // the practice's confidentiality notice, shown after the text
	MaxBytes     int64  // the largest message Seal takes (ErrTooLarge); 0: no limit
}

// Result describes the PDF Seal wrote, for the record.
type Result struct {
	PDFSHA256 string // hex, of the PDF as attached (before base64)
	PDFSize   int64
}

// ErrTooLarge is a message over Options.MaxBytes.
var ErrTooLarge = errors.New("sealed: the message is too large to seal")

// errNotPrepared: the passphrase given to Seal is not CheckPassphrase's
// output. PDF readers compare the prepared bytes, so a PDF sealed with an
// unprepared passphrase might not open with the one the client types.
var errNotPrepared = errors.New("sealed: the passphrase is empty, too long or not prepared (CheckPassphrase)")

// Seal reads the plain copy of a message (RFC 5322, after the notice,
// without Bcc) from msg and writes to w the whole message a sealed
// recipient receives: the original's From, To, Cc, Date, Message-ID,
// In-Reply-To, References and Reply-To; o.Subject; a multipart/mixed
// holding o.Text and o.HTML and message.pdf, the message sealed with
// o.Passphrase. Nothing is written to w before the message has been read
// and found sound: a *MalformedError or ErrTooLarge leaves w untouched.
func Seal(w io.Writer, msg io.Reader, o Options) (Result, error) {
	if !isPrepared(o.Passphrase) {
		return Result{}, errNotPrepared
	}
	raw, err := readMessage(msg, o.MaxBytes)
	if err != nil {
		return Result{}, err
	}
	m, err := parseMessage(raw)
	if err != nil {
		return Result{}, err
	}
	f, err := loadFont()
	if err != nil {
		return Result{}, err
	}
	doc, err := compose(f, m, raw, o)
	if err != nil {
		return Result{}, err
	}
	outer, err := writeOuterStart(w, m.header, o)
	if err != nil {
		return Result{}, err
	}
	sum := sha256.New()
	body := newBase64Lines(w)
	counted := &countingWriter{w: io.MultiWriter(sum, body)}
	if err := writeSealed(counted, doc, o.Passphrase, defaultKeys); err != nil {
		return Result{}, err
	}
	if err := body.Close(); err != nil {
		return Result{}, fmt.Errorf("sealed: write the message: %w", err)
	}
	if _, err := io.WriteString(w, "\r\n--"+outer+"--\r\n"); err != nil {
		return Result{}, fmt.Errorf("sealed: write the message: %w", err)
	}
	return Result{PDFSHA256: hex.EncodeToString(sum.Sum(nil)), PDFSize: counted.n}, nil
}

// isPrepared: p is a passphrase as CheckPassphrase returns it.
func isPrepared(p string) bool {
	if p == "" || len(p) > MaxPassphraseBytes {
		return false
	}
	prepared, err := stringprep.SASLprep.Prepare(p)
	return err == nil && prepared == p
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// readMessage reads the whole message, which the PDF embeds as
// message.eml, into one buffer with room for pdfcpu's padding. When the
// reader can tell its size (a file, a bytes or strings reader) the buffer
// is allocated once; otherwise it is read in growing chunks and joined
// once, so that no buffer is copied over and over as it grows.
func readMessage(r io.Reader, max int64) ([]byte, error) {
	limit := max
	if limit <= 0 {
		limit = 1<<63 - 1
	}
	if hint := sizeHint(r); hint > 0 && hint <= limit {
		buf := make([]byte, 0, hint+padSpare)
		n, err := io.ReadFull(r, buf[:hint])
		buf = buf[:n]
		if err != nil && err != io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("sealed: read the message: %w", err)
		}
		if err == nil { // there may be more than the hint said
			return readRest(r, buf, limit)
		}
		return buf, nil
	}
	return readRest(r, nil, limit)
}

// readRest reads what is left of r after head, up to limit bytes in all.
func readRest(r io.Reader, head []byte, limit int64) ([]byte, error) {
	chunks := [][]byte{}
	total := int64(len(head))
	size := 64 << 10
	for {
		chunk := make([]byte, size)
		n, err := io.ReadFull(r, chunk)
		total += int64(n)
		if total > limit {
			return nil, ErrTooLarge
		}
		if n > 0 {
			chunks = append(chunks, chunk[:n])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("sealed: read the message: %w", err)
		}
		size = min(size*2, 8<<20)
	}
	if len(chunks) == 0 {
		return head, nil
	}
	out := make([]byte, 0, total+padSpare)
	out = append(out, head...)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out, nil
}

// sizeHint is how many bytes r says are left to read, or 0.
func sizeHint(r io.Reader) int64 {
	switch v := r.(type) {
	case interface{ Len() int }:
		return int64(v.Len())
	case interface {
		Stat() (fs.FileInfo, error)
		io.Seeker
	}:
		st, err := v.Stat()
		if err != nil || !st.Mode().IsRegular() {
			return 0
		}
		pos, err := v.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0
		}
		return max(st.Size()-pos, 0)
	case interface{ Size() int64 }:
		return v.Size()
	}
	return 0
}

// fileSize is a size as people read it.
func fileSize(n int) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d bytes", n)
	case n < 1000*1000:
		return fmt.Sprintf("%d KB", (n+500)/1000)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/1e6), ".0") + " MB"
}
