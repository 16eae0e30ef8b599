package rules

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"sync"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/textutil"
)

// copyTrackingEnd copies r to w and returns the last two bytes copied.
func copyTrackingEnd(w io.Writer, r io.Reader) ([]byte, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var last []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
			if n >= 2 {
				last = append(last[:0], buf[n-2:n]...)
			} else {
				last = append(last, buf[:n]...)
				if len(last) > 2 {
					last = last[len(last)-2:]
				}
			}
		}
		if err == io.EOF {
			return last, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// textPlain appends the notice to a text/plain part in its own charset and
// transfer encoding. When the charset cannot hold the notice, the part is
// re-encoded as UTF-8.
func (t *transformer) textPlain(w io.Writer, h textproto.Header, body io.Reader, params map[string]string) (bool, error) {
	cte := transferEncoding(h)
	label := params["charset"]
	flowed := strings.EqualFold(params["format"], "flowed")
	text := t.n.plain
	if flowed {
		text = t.n.flowed
	}
	if isIdentityEncoding(cte) {
		whole, long, release, err := peekLongLine(body)
		if err != nil {
			return false, err
		}
		defer release()
		body = whole
		if long {
			// Lines over 998 octets may not go out as they are (RFC 5322):
			// the part is re-encoded as quoted-printable, which folds them.
			return t.textPlainAsUTF8(w, h, body, params, cte)
		}
	}
	nb, ok := noticeIn(text, label)
	if !ok {
		return t.textPlainAsUTF8(w, h, body, params, cte)
	}
	if (cte == "" || cte == "7bit") && !isASCII(string(nb)) {
		h.Set("Content-Transfer-Encoding", "8bit")
		cte = "8bit"
	}
	if err := textproto.WriteHeader(w, h); err != nil {
		return false, err
	}
	return true, t.appendEncoded(w, body, cte, label, nb, false)
}

// textPlainAsUTF8 re-encodes a text part whose charset cannot hold the
// notice: decoded from its charset, written as UTF-8 quoted-printable.
func (t *transformer) textPlainAsUTF8(w io.Writer, h textproto.Header, body io.Reader, params map[string]string, cte string) (bool, error) {
	decoded, err := decodeCTE(body, cte)
	if err != nil {
		return false, err
	}
	var utf8r io.Reader = decoded
	if label := params["charset"]; label != "" {
		utf8r, err = charset.Reader(label, decoded)
	}
	if err != nil {
		// An unknown charset: keep the part as it is and give the notice a
		// part of its own, rather than guess at the text.
		return false, copyEntity(w, h, io.MultiReader(body))
	}
	params["charset"] = "utf-8"
	mt, _ := contentType(h)
	if !h.Has("Content-Type") && !h.Has("Mime-Version") && h.Has("From") {
		// A message without MIME gets the header that makes its new
		// Content-Type count.
		h.Set("MIME-Version", "1.0")
	}
	h.Set("Content-Type", mime.FormatMediaType(mt, params))
	h.Set("Content-Transfer-Encoding", "quoted-printable")
	if err := textproto.WriteHeader(w, h); err != nil {
		return false, err
	}
	text := t.n.plain
	if strings.EqualFold(params["format"], "flowed") {
		text = t.n.flowed
	}
	qp := quotedprintable.NewWriter(w)
	tail := &tailKeeper{max: len(t.n.norm)*2 + 256}
	if _, err := io.Copy(qp, io.TeeReader(utf8r, tail)); err != nil {
		return false, fmt.Errorf("%w: %w", &mimeError{"a text part cannot be decoded: its encoding or character set is damaged"}, err)
	}
	if !tail.endsWith(t.n.norm) {
		io.WriteString(qp, separatorFor(tail.bytes())+text+"\r\n")
	}
	return true, qp.Close()
}

// separatorFor starts the notice on a line of its own after a blank line.
func separatorFor(end []byte) string {
	if len(end) == 0 {
		return ""
	}
	if bytes.HasSuffix(end, []byte("\n")) {
		return "\r\n"
	}
	return "\r\n\r\n"
}

// appendEncoded copies a text body and appends nb (the notice, already in
// the part's charset) in the part's transfer encoding. Quoted-printable and
// 7bit/8bit bodies are copied as they are; base64 is decoded and encoded
// again, since base64 cannot simply be continued.
func (t *transformer) appendEncoded(w io.Writer, body io.Reader, cte, label string, nb []byte, isHTML bool) error {
	tail := &tailKeeper{max: len(t.n.norm)*2 + 256}
	switch cte {
	case "quoted-printable":
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(tail, quotedprintable.NewReader(pr))
			io.Copy(io.Discard, pr)
			done <- err
		}()
		last, err := copyTrackingEnd(io.MultiWriter(w, pw), body)
		pw.Close()
		<-done // a decoding error only means the tail check sees less
		if err != nil {
			return err
		}
		if tail.endsWith(t.n.norm) {
			return nil
		}
		if !bytes.HasSuffix(last, []byte("\r\n")) {
			io.WriteString(w, "\r\n")
		}
		qp := quotedprintable.NewWriter(w)
		qp.Write([]byte("\r\n"))
		qp.Write(nb)
		qp.Write([]byte("\r\n"))
		return qp.Close()
	case "base64":
		enc := newBase64Lines(w)
		dec := base64.NewDecoder(base64.StdEncoding, &stripSpace{r: body})
		if _, err := io.Copy(io.MultiWriter(enc, tail), dec); err != nil {
			return fmt.Errorf("%w: %w", &mimeError{"a text part's base64 encoding is damaged"}, err)
		}
		if !tail.endsWith(t.n.norm) {
			enc.Write([]byte(separatorFor(tail.bytes())))
			enc.Write(nb)
			enc.Write([]byte("\r\n"))
		}
		return enc.Close()
	default: // 7bit, 8bit, binary, or none
		last, err := copyTrackingEnd(io.MultiWriter(w, tail), body)
		if err != nil {
			return err
		}
		if tail.endsWith(t.n.norm) {
			return nil
		}
		sep := "\r\n"
		if len(last) > 0 && !bytes.HasSuffix(last, []byte("\r\n")) {
			sep = "\r\n\r\n"
		} else if len(last) == 0 {
			sep = ""
		}
		io.WriteString(w, sep)
		w.Write(nb)
		_, err = io.WriteString(w, "\r\n")
		return err
	}
}

// textHTML puts an HTML notice block before </body>, or at the end.
func (t *transformer) textHTML(w io.Writer, h textproto.Header, body io.Reader, params map[string]string) (bool, error) {
	cte := transferEncoding(h)
	if !asciiCompatible(params["charset"]) {
		// The notice block is ASCII; it cannot be spliced into UTF-16.
		return false, copyEntity(w, h, body)
	}
	decoded, err := decodeCTE(body, cte)
	if err != nil {
		return false, err
	}
	buf, err := io.ReadAll(io.LimitReader(decoded, maxHTMLInMemory))
	if err != nil {
		return false, fmt.Errorf("%w: %w", &mimeError{"an HTML part cannot be decoded: its encoding is damaged"}, err)
	}
	block := []byte(t.n.html)
	var out [][]byte
	switch {
	case bytes.Contains(buf, []byte(htmlNoticeMarker)):
		out = [][]byte{buf}
	case len(buf) < maxHTMLInMemory:
		if i := lastIndexFold(buf, []byte("</body")); i >= 0 {
			out = [][]byte{buf[:i], block, buf[i:]}
		} else {
			out = [][]byte{buf, block}
		}
	default:
		out = [][]byte{buf}
	}
	if isIdentityEncoding(cte) && hasLongLine(buf) {
		cte = "quoted-printable"
		h.Set("Content-Transfer-Encoding", cte)
	}
	if (cte == "" || cte == "7bit") && !isASCIIBytes(buf) {
		h.Set("Content-Transfer-Encoding", "8bit")
	}
	if err := textproto.WriteHeader(w, h); err != nil {
		return false, err
	}
	enc, closeEnc := encodeCTE(w, cte)
	for _, b := range out {
		if _, err := enc.Write(b); err != nil {
			return false, err
		}
	}
	if len(buf) >= maxHTMLInMemory {
		if _, err := io.Copy(enc, decoded); err != nil {
			return false, fmt.Errorf("%w: %w", &mimeError{"an HTML part cannot be decoded: its encoding is damaged"}, err)
		}
		enc.Write(block)
	}
	return true, closeEnc()
}

func lastIndexFold(s, sep []byte) int {
	return bytes.LastIndex(bytes.ToLower(s), bytes.ToLower(sep))
}

// tailKeeper remembers the last bytes written to it.
type tailKeeper struct {
	buf []byte
	max int
}

func (t *tailKeeper) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailKeeper) bytes() []byte { return t.buf }

// endsWith compares with spacing collapsed, so a notice wrapped or
// reflowed differently is still recognised.
func (t *tailKeeper) endsWith(norm string) bool {
	return strings.HasSuffix(textutil.OneLine(string(t.buf)), norm)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
