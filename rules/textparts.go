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

// The notice in the text the recipient reads: appended to a text/plain part
// in the part's own charset and transfer encoding (re-encoded as UTF-8
// quoted-printable only when it must be), or placed before an HTML part's
// </body>. A part that already ends with the notice does not get it twice.

// maxHTMLInMemory: HTML parts are searched for </body> in memory up to this
// size; a larger one gets the notice at its end.
const maxHTMLInMemory = 8 << 20

// textPlain appends the notice to a text/plain part in its own charset and
// transfer encoding. When the charset cannot hold the notice, or the part
// has lines too long to send, the part is re-encoded as UTF-8.
func (t *noticeTransform) textPlain(w io.Writer, h textproto.Header, body io.Reader, params map[string]string) (bool, error) {
	cte := transferEncoding(h)
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
	notice, ok := encodeInCharset(t.n.forTextPart(params), params["charset"])
	if !ok {
		return t.textPlainAsUTF8(w, h, body, params, cte)
	}
	if (cte == "" || cte == "7bit") && !isASCII(notice) {
		h.Set("Content-Transfer-Encoding", "8bit")
		cte = "8bit"
	}
	if err := textproto.WriteHeader(w, h); err != nil {
		return false, err
	}
	switch cte {
	case "quoted-printable":
		return true, t.appendQuotedPrintable(w, body, notice)
	case "base64":
		return true, t.appendBase64(w, body, notice)
	}
	return true, t.appendUnencoded(w, body, notice)
}

// textPlainAsUTF8 re-encodes a text part whose charset cannot hold the
// notice: decoded from its charset, written as UTF-8 quoted-printable.
func (t *noticeTransform) textPlainAsUTF8(w io.Writer, h textproto.Header, body io.Reader, params map[string]string, cte string) (bool, error) {
	decoded, err := decodeCTE(body, cte)
	if err != nil {
		return false, err
	}
	text := decoded
	if label := params["charset"]; label != "" {
		if text, err = charset.Reader(label, decoded); err != nil {
			// An unknown charset: keep the part as it is and give the
			// notice a part of its own, rather than guess at the text.
			return false, copyEntity(w, h, body)
		}
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
	qp := quotedprintable.NewWriter(w)
	tail := t.newTail()
	if _, err := io.Copy(qp, io.TeeReader(text, tail)); err != nil {
		return false, fmt.Errorf("%w: %w", &mimeError{"a text part cannot be decoded: its encoding or character set is damaged"}, err)
	}
	if !tail.endsWith(t.n.norm) {
		io.WriteString(qp, separatorFor(tail.bytes())+t.n.forTextPart(params)+"\r\n")
	}
	return true, qp.Close()
}

// appendQuotedPrintable copies a quoted-printable body as it is and appends
// the notice (in the part's charset) encoded the same way. The body is
// decoded on the side only to see whether it ends with the notice.
func (t *noticeTransform) appendQuotedPrintable(w io.Writer, body io.Reader, notice []byte) error {
	tail := t.newTail()
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
	qp.Write(notice)
	qp.Write([]byte("\r\n"))
	return qp.Close()
}

// appendBase64 decodes a base64 body and encodes it again with the notice
// (in the part's charset) after it: base64 cannot simply be continued.
func (t *noticeTransform) appendBase64(w io.Writer, body io.Reader, notice []byte) error {
	tail := t.newTail()
	enc := newBase64Lines(w)
	dec := base64.NewDecoder(base64.StdEncoding, &stripSpace{r: body})
	if _, err := io.Copy(io.MultiWriter(enc, tail), dec); err != nil {
		return fmt.Errorf("%w: %w", &mimeError{"a text part's base64 encoding is damaged"}, err)
	}
	if !tail.endsWith(t.n.norm) {
		enc.Write([]byte(separatorFor(tail.bytes())))
		enc.Write(notice)
		enc.Write([]byte("\r\n"))
	}
	return enc.Close()
}

// appendUnencoded copies a 7bit, 8bit or binary body (or one without a
// transfer encoding) as it is and appends the notice in the part's charset.
func (t *noticeTransform) appendUnencoded(w io.Writer, body io.Reader, notice []byte) error {
	tail := t.newTail()
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
	w.Write(notice)
	_, err = io.WriteString(w, "\r\n")
	return err
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

// textHTML puts an HTML notice block before </body>, or at the end.
func (t *noticeTransform) textHTML(w io.Writer, h textproto.Header, body io.Reader, params map[string]string) (bool, error) {
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
	if isIdentityEncoding(cte) && hasLongLine(buf) {
		cte = "quoted-printable"
		h.Set("Content-Transfer-Encoding", cte)
	}
	if (cte == "" || cte == "7bit") && !isASCII(buf) {
		h.Set("Content-Transfer-Encoding", "8bit")
	}
	if err := textproto.WriteHeader(w, h); err != nil {
		return false, err
	}
	enc, closeEnc := encodeCTE(w, cte)
	for _, b := range htmlWithNotice(buf, block) {
		if _, err := enc.Write(b); err != nil {
			return false, err
		}
	}
	if len(buf) >= maxHTMLInMemory {
		seen := &markerWatch{marker: []byte(htmlNoticeMarker), seen: bytes.Contains(buf, []byte(htmlNoticeMarker))}
		if _, err := io.Copy(io.MultiWriter(enc, seen), decoded); err != nil {
			return false, fmt.Errorf("%w: %w", &mimeError{"an HTML part cannot be decoded: its encoding is damaged"}, err)
		}
		if !seen.seen {
			if _, err := enc.Write(block); err != nil {
				return false, err
			}
		}
	}
	return true, closeEnc()
}

// markerWatch tells whether a marker passed through it, across the
// boundaries of the writes, keeping only the marker's length of the past.
type markerWatch struct {
	marker, carry []byte
	seen          bool
}

func (m *markerWatch) Write(p []byte) (int, error) {
	if m.seen {
		return len(p), nil
	}
	k := len(m.marker) - 1
	edge := append(m.carry, p[:min(len(p), k)]...)
	m.seen = bytes.Contains(edge, m.marker) || bytes.Contains(p, m.marker)
	if len(p) >= k {
		m.carry = append(m.carry[:0], p[len(p)-k:]...)
	} else {
		m.carry = append(m.carry[:0], edge[max(0, len(edge)-k):]...)
	}
	return len(p), nil
}

// htmlWithNotice is the HTML read into memory with the notice block before
// its last </body>, or after it when it has none; unchanged when the notice
// is there already, or when the part goes on past what was read (the block
// then goes at the very end).
func htmlWithNotice(buf, block []byte) [][]byte {
	switch {
	case bytes.Contains(buf, []byte(htmlNoticeMarker)):
		return [][]byte{buf}
	case len(buf) < maxHTMLInMemory:
		if i := lastIndexFold(buf, []byte("</body")); i >= 0 {
			return [][]byte{buf[:i], block, buf[i:]}
		}
		return [][]byte{buf, block}
	}
	return [][]byte{buf}
}

func lastIndexFold(s, sep []byte) int {
	return bytes.LastIndex(bytes.ToLower(s), bytes.ToLower(sep))
}

// newTail keeps enough of a part's decoded end to see whether the part
// ends with the notice already.
func (t *noticeTransform) newTail() *tailKeeper {
	return &tailKeeper{max: len(t.n.norm)*2 + 256}
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

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
