package rules

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"

	"github.com/sealpost/sealpost/internal/bufpool"
	"github.com/sealpost/sealpost/internal/textutil"
)

// MIME limits: go-message has none of its own, and a message nested 20,000
// deep would otherwise take a minute and gigabytes to walk.
const (
	maxMIMEDepth = 100
	maxMIMEParts = 1000
	// HTML parts are searched for </body> in memory up to this size; a
	// larger one gets the notice at its end.
	maxHTMLInMemory = 8 << 20
)

// noticeText holds the practice's confidentiality notice in the forms the
// transform needs.
type noticeText struct {
	text   string // as configured, lines joined by \n
	plain  string // wrapped at 76 columns, CRLF line ends
	flowed string // RFC 3676 format=flowed: soft breaks end in a space
	html   string // an ASCII-only HTML block (non-ASCII as character references)
	norm   string // whitespace collapsed: to see whether a message already ends with it
}

const htmlNoticeMarker = "data-sealpost-notice"

func newNoticeText(s string) *noticeText {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
	n := &noticeText{text: s, norm: textutil.OneLine(s)}
	var plain, flowed []string
	for _, para := range strings.Split(s, "\n") {
		words := strings.Fields(para)
		line := ""
		var lines []string
		for _, w := range words {
			if line != "" && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) > 72 {
				lines = append(lines, line)
				line = w
				continue
			}
			if line != "" {
				line += " "
			}
			line += w
		}
		lines = append(lines, line)
		plain = append(plain, lines...)
		for i, l := range lines {
			if strings.HasPrefix(l, " ") || strings.HasPrefix(l, ">") || strings.HasPrefix(l, "From ") {
				l = " " + l // space-stuffing (RFC 3676 4.4)
			}
			if i < len(lines)-1 {
				l += " " // soft break: the paragraph goes on
			}
			flowed = append(flowed, l)
		}
	}
	n.plain = strings.Join(plain, "\r\n")
	n.flowed = strings.Join(flowed, "\r\n")
	var h strings.Builder
	h.WriteString(`<div class="sealpost-notice" ` + htmlNoticeMarker + `="1" style="margin-top:1em;font-size:smaller;color:#555555"><hr>`)
	for i, para := range strings.Split(s, "\n") {
		if i > 0 {
			h.WriteString("<br>")
		}
		for _, r := range html.EscapeString(para) {
			if r < 0x80 {
				h.WriteRune(r)
			} else {
				fmt.Fprintf(&h, "&#%d;", r)
			}
		}
	}
	h.WriteString("</div>")
	n.html = h.String()
	return n
}

// transformResult is what the notice transform learnt about the message.
type transformResult struct {
	header    textproto.Header // the top-level header as written
	protected string           // "signed", "encrypted" or "" when the sender's client protected the message
	noticed   bool             // the notice is in the message (added, or there already)
}

// mimeError is a message whose structure cannot be transformed safely.
type mimeError struct{ reason string }

func (e *mimeError) Error() string { return e.reason }

type transformer struct {
	n     *noticeText
	parts int
	res   *transformResult
	// claimOpened: the top-level multipart/encrypted did not hold what it
	// claimed, and is read as the multipart it is.
	claimOpened bool
}

// transformNotice copies the message from r to w with the notice appended
// where the recipient will read it, and without any Bcc header. Headers it
// does not need to change stay byte for byte; attachments and the parts a
// sender signed or encrypted are copied, never decoded. A message that
// claims to be encrypted as a whole is copied as it is (protected
// "encrypted"): verifyEncrypted must then say whether it is.
func transformNotice(w io.Writer, r io.Reader, n *noticeText) (*transformResult, error) {
	return transform(w, r, n, true)
}

// transformClaimed is transformNotice for a message whose claim to be
// encrypted did not hold: it is handled like any clear message. Inline
// text gets the notice, a multipart/encrypted is read as the multipart it
// is, and an S/MIME body, which is one piece, is kept whole beside the
// notice.
func transformClaimed(w io.Writer, r io.Reader, n *noticeText) (*transformResult, error) {
	return transform(w, r, n, false)
}

func transform(w io.Writer, r io.Reader, n *noticeText, passThrough bool) (*transformResult, error) {
	br := bufpool.Reader(r)
	defer bufpool.PutReader(br)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, &mimeError{"its header cannot be read"}
	}
	h.Del("Bcc")
	res := &transformResult{}
	t := &transformer{n: n, res: res}
	bw := bufpool.Writer(w)
	defer bufpool.PutWriter(bw)
	// Lines over 998 octets are refused wherever they cannot be re-encoded;
	// a copy passed through unguarded is checked by verifyEncrypted.
	guarded := &lineGuard{w: bw}
	mt, params := contentType(h)
	prot := protection(mt, params, h)
	if prot == "" && mt == "text/plain" && !isAttachment(h) {
		prot = inlinePGP(br)
	}
	if prot == "encrypted" && !passThrough {
		// Like any clear message: the text, or the parts, get the notice;
		// an S/MIME body, which is one piece, is kept whole beside it.
		switch mt {
		case "text/plain":
			prot = ""
		case "multipart/encrypted":
			prot, t.claimOpened = "", true
		default:
			prot = "opaque"
		}
	}
	res.protected = prot
	switch {
	case prot == "encrypted":
		// The notice cannot go inside without breaking the recipient's
		// decryption; the client's own encryption protects the message.
		err = copyEntity(bw, h, br)
	case prot == "signed" || prot == "opaque" || !isBodyCandidate(mt, h) || !t.canHoldNotice(mt, params):
		err = t.wrapWithNotice(guarded, h, br)
		res.noticed = err == nil
	default:
		var ok bool
		ok, err = t.entity(guarded, h, br, 0)
		if err == nil && !ok {
			return nil, &mimeError{"it has no part where the practice's confidentiality notice can go"}
		}
		res.noticed = ok
	}
	if err != nil {
		return nil, err
	}
	res.header = h
	return res, bw.Flush()
}

func contentType(h textproto.Header) (string, map[string]string) {
	v := h.Get("Content-Type")
	if v == "" {
		return "text/plain", map[string]string{}
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		// Unparseable: handle it as opaque data, never guess.
		return "application/octet-stream", map[string]string{}
	}
	return mt, params
}

func isAttachment(h textproto.Header) bool {
	d, _, err := mime.ParseMediaType(h.Get("Content-Disposition"))
	return err == nil && d == "attachment"
}

// protection says whether the sender's client signed or encrypted the
// entity: "encrypted" only where that is certain, for such a message goes to
// key holders as it is. "opaque": kept whole, as a signed one is.
func protection(mt string, params map[string]string, h textproto.Header) string {
	switch mt {
	case "multipart/signed":
		return "signed"
	case "multipart/encrypted":
		if strings.EqualFold(params["protocol"], "application/pgp-encrypted") {
			return "encrypted"
		}
		return "opaque"
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		switch strings.ToLower(params["smime-type"]) {
		case "enveloped-data", "authenveloped-data":
			return "encrypted"
		}
		// Signed (opaque), compressed, certificates, or unsaid: sealpost
		// encrypts it for key holders like any other message.
		return "opaque"
	}
	return ""
}

// inlinePGP looks at the start of a text/plain body for an armored PGP
// message: "encrypted" (to be verified) when the body begins with one,
// "signed" when it begins with a clear-signed message.
func inlinePGP(br *bufio.Reader) string {
	head, _ := br.Peek(8 << 10)
	head = bytes.TrimLeft(head, " \t\r\n")
	switch {
	case bytes.HasPrefix(head, []byte(armorBegin)):
		return "encrypted"
	case bytes.HasPrefix(head, []byte("-----BEGIN PGP SIGNED MESSAGE-----")):
		return "signed"
	}
	return ""
}

func isBodyCandidate(mt string, h textproto.Header) bool {
	if isAttachment(h) {
		return false
	}
	return mt == "text/plain" || mt == "text/html" || strings.HasPrefix(mt, "multipart/")
}

func copyEntity(w io.Writer, h textproto.Header, body io.Reader) error {
	if err := textproto.WriteHeader(w, h); err != nil {
		return err
	}
	_, err := io.Copy(w, body)
	return err
}

// canHoldNotice says whether a text entity can take the notice in place:
// its charset can express it, or can at least be decoded and re-encoded.
func (t *transformer) canHoldNotice(mt string, params map[string]string) bool {
	switch mt {
	case "text/plain":
		if _, ok := noticeIn(t.n.plain, params["charset"]); ok {
			return true
		}
		_, known := lookupCharset(params["charset"])
		return known
	case "text/html":
		return asciiCompatible(params["charset"])
	}
	return true
}

// contentHeaders are the fields that describe the entity rather than the
// message; wrapping moves them into the inner part.
func isContentHeader(k string) bool {
	k = strings.ToLower(k)
	return strings.HasPrefix(k, "content-")
}

// wrapWithNotice turns the top-level entity into the first part of a
// multipart/mixed whose second part is the notice. The entity's bytes, and
// its content headers, are kept exactly: a signature over them still holds.
func (t *transformer) wrapWithNotice(w io.Writer, h textproto.Header, body io.Reader) error {
	fields := h.Fields()
	var innerRaw [][]byte
	for fields.Next() {
		if isContentHeader(fields.Key()) {
			raw, err := fields.Raw()
			if err != nil {
				return err
			}
			innerRaw = append(innerRaw, append([]byte(nil), raw...))
			fields.Del()
		}
	}
	boundary := newBoundary()
	if !h.Has("Mime-Version") {
		h.Set("MIME-Version", "1.0")
	}
	h.Set("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": boundary}))
	if err := textproto.WriteHeader(w, h); err != nil {
		return err
	}
	fmt.Fprintf(w, "--%s\r\n", boundary)
	if len(innerRaw) == 0 {
		io.WriteString(w, "Content-Type: text/plain; charset=us-ascii\r\n")
	}
	for _, raw := range innerRaw {
		w.Write(raw)
	}
	io.WriteString(w, "\r\n")
	// The CRLF before the next delimiter belongs to the delimiter: the
	// entity's bytes end exactly where they ended.
	if _, err := io.Copy(w, body); err != nil {
		return err
	}
	fmt.Fprintf(w, "\r\n--%s\r\n", boundary)
	t.writeNoticePart(w)
	fmt.Fprintf(w, "\r\n--%s--\r\n", boundary)
	return nil
}

// writeNoticePart writes a complete text/plain part holding the notice.
func (t *transformer) writeNoticePart(w io.Writer) {
	if isASCII(t.n.plain) {
		io.WriteString(w, "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
		io.WriteString(w, t.n.plain+"\r\n")
		return
	}
	io.WriteString(w, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(w)
	io.WriteString(qp, t.n.plain+"\r\n")
	qp.Close()
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

// entity writes one MIME entity with the notice added in the text the
// recipient reads. It reports whether the notice went in.
func (t *transformer) entity(w io.Writer, h textproto.Header, body io.Reader, depth int) (bool, error) {
	if depth > maxMIMEDepth {
		return false, &mimeError{fmt.Sprintf("its parts are nested more than %d deep", maxMIMEDepth)}
	}
	mt, params := contentType(h)
	if protection(mt, params, h) != "" && !(depth == 0 && t.claimOpened) {
		return false, copyEntity(w, h, body)
	}
	if !isBodyCandidate(mt, h) {
		return false, copyLeaf(w, h, body)
	}
	switch {
	case mt == "text/plain":
		return t.textPlain(w, h, body, params)
	case mt == "text/html":
		return t.textHTML(w, h, body, params)
	case mt == "multipart/alternative":
		return t.multipart(w, h, body, params, depth, true)
	default: // mixed, related, and every other multipart
		return t.multipart(w, h, body, params, depth, false)
	}
}

// multipart rewrites a multipart entity, keeping its boundary. In an
// alternative every version gets the notice; elsewhere the first part is
// the body, and when it cannot take the notice a notice part is added last.
func (t *transformer) multipart(w io.Writer, h textproto.Header, body io.Reader, params map[string]string, depth int, alternative bool) (bool, error) {
	boundary := params["boundary"]
	if boundary == "" {
		return false, &mimeError{"a multipart section of it has no boundary"}
	}
	if err := textproto.WriteHeader(w, h); err != nil {
		return false, err
	}
	mr := textproto.NewMultipartReader(body, boundary)
	noticed := false
	first := true
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return false, &mimeError{"its parts cannot be told apart: a MIME boundary line is missing, wrong or damaged"}
		}
		t.parts++
		if t.parts > maxMIMEParts {
			return false, &mimeError{fmt.Sprintf("it has more than %d parts", maxMIMEParts)}
		}
		if first {
			fmt.Fprintf(w, "--%s\r\n", boundary)
			first = false
		} else {
			fmt.Fprintf(w, "\r\n--%s\r\n", boundary)
		}
		if alternative || i == 0 {
			ok, err := t.entity(w, p.Header, &cutOffReader{p}, depth+1)
			if err != nil {
				return false, err
			}
			noticed = noticed || ok
			continue
		}
		pmt, pparams := contentType(p.Header)
		if strings.HasPrefix(pmt, "multipart/") || protection(pmt, pparams, p.Header) != "" {
			err = copyEntity(w, p.Header, &cutOffReader{p})
		} else {
			err = copyLeaf(w, p.Header, &cutOffReader{p})
		}
		if err != nil {
			return false, err
		}
	}
	if first {
		return false, &mimeError{"a multipart section of it has no parts"}
	}
	if !noticed && !alternative {
		fmt.Fprintf(w, "\r\n--%s\r\n", boundary)
		t.writeNoticePart(w)
		noticed = true
	}
	fmt.Fprintf(w, "\r\n--%s--\r\n", boundary)
	return noticed, nil
}

// errPartCutOff: the message ended inside a part of a multipart, before
// its closing boundary line.
var errPartCutOff = errors.New("a part has no closing boundary")

// cutOffReader tells a part cut off by the message's end (the multipart
// reader's unexpected EOF) from one whose own encoding ends too soon.
type cutOffReader struct{ r io.Reader }

func (c *cutOffReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.ErrUnexpectedEOF {
		err = errPartCutOff
	}
	return n, err
}

// asciiCompatible charsets let us append bytes without decoding the text.
func lookupCharset(label string) (encoding.Encoding, bool) {
	if label == "" {
		label = "us-ascii"
	}
	switch strings.ToLower(label) {
	case "us-ascii", "ascii", "utf-8", "utf8":
		return nil, true
	}
	enc, err := htmlindex.Get(label)
	if err != nil {
		return nil, false
	}
	return enc, true
}

func asciiCompatible(label string) bool {
	l := strings.ToLower(label)
	return !strings.HasPrefix(l, "utf-16") && !strings.HasPrefix(l, "utf-32") && !strings.HasPrefix(l, "utf-7") &&
		!strings.HasPrefix(l, "iso-2022") && !strings.HasPrefix(l, "hz")
}

// noticeIn renders s in the part's charset, or reports that it cannot.
func noticeIn(s, label string) ([]byte, bool) {
	if isASCII(s) {
		return []byte(s), asciiCompatible(label)
	}
	enc, ok := lookupCharset(label)
	if !ok || !asciiCompatible(label) {
		return nil, false
	}
	if enc == nil {
		if l := strings.ToLower(label); l == "utf-8" || l == "utf8" {
			return []byte(s), true
		}
		return nil, false // us-ascii cannot hold it
	}
	b, err := enc.NewEncoder().String(s)
	if err != nil {
		return nil, false
	}
	return []byte(b), true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// textPlain appends the notice to a text/plain part in its own charset and
// transfer encoding. When the charset cannot hold the notice, the part is
// re-encoded as UTF-8.
func (t *transformer) textPlain(w io.Writer, h textproto.Header, body io.Reader, params map[string]string) (bool, error) {
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	label := params["charset"]
	flowed := strings.EqualFold(params["format"], "flowed")
	text := t.n.plain
	if flowed {
		text = t.n.flowed
	}
	if unencoded(cte) {
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
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
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
	if unencoded(cte) && hasLongLine(buf) {
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

func isASCIIBytes(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func lastIndexFold(s, sep []byte) int {
	return bytes.LastIndex(bytes.ToLower(s), bytes.ToLower(sep))
}

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

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

func decodeHeaderText(s string) string {
	d, err := wordDecoder.DecodeHeader(s)
	if err == nil {
		return d
	}
	// One word in an unknown charset must not leave the others encoded
	// (and unread by the content rules): decode word by word.
	var b strings.Builder
	prevEncoded := false
	for i, w := range strings.Fields(s) {
		d, err := wordDecoder.Decode(w)
		encoded := err == nil
		if !encoded {
			d = w
		}
		if i > 0 && !(encoded && prevEncoded) { // adjacent encoded words join
			b.WriteByte(' ')
		}
		b.WriteString(d)
		prevEncoded = encoded
	}
	return b.String()
}

// newBoundary makes the boundary of a multipart the transform creates;
// random, so no content can contain it (tests fix it for golden files).
var newBoundary = func() string { return "sealpost-" + randomHex(12) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// unencoded is a transfer encoding that leaves lines as they are.
func unencoded(cte string) bool {
	return cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"
}

// hasLongLine reports a line over 998 octets (RFC 5322 2.1.1).
func hasLongLine(b []byte) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return len(b) > maxLine
		}
		if n := i; n > maxLine+1 || (n == maxLine+1 && b[i-1] != '\r') {
			return true
		}
		b = b[i+1:]
	}
	return false
}

const (
	maxLine = 998
	maxPeek = 1 << 20
)

// peekLongLine reads up to maxPeek of a part to see whether it has a line
// over 998 octets: the transfer encoding must be chosen before the part's
// header is written. It returns the whole part again (what it read, then
// the rest) and whether a long line was found in what it read (one further
// on is refused: lineGuard). What it read is in a pooled buffer: call
// release once the part has been read.
func peekLongLine(body io.Reader) (whole io.Reader, long bool, release func(), err error) {
	buf := peekSmall.Get().(*[]byte)
	release = func() { peekSmall.Put(buf) }
	n, err := io.ReadFull(body, *buf)
	long = hasLongLine((*buf)[:n])
	if err == nil && !long {
		// A large part: the rest of the peek needs the large buffer, and
		// only the line still open at the end of the first read and what
		// follows need looking at.
		open := bytes.LastIndexByte((*buf)[:n], '\n') + 1
		small := buf
		buf = peekLarge.Get().(*[]byte)
		release = func() { peekLarge.Put(buf) }
		copy(*buf, (*small)[:n])
		peekSmall.Put(small)
		var m int
		m, err = io.ReadFull(body, (*buf)[n:])
		long = hasLongLine((*buf)[open : n+m])
		n += m
	}
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		release()
		return nil, false, nil, err
	}
	return io.MultiReader(bytes.NewReader((*buf)[:n]), body), long, release, nil
}

// peekSmall and peekLarge hold what peekLongLine read: a part of a
// megabyte read into a fresh slice cost the relay more in allocation and
// clearing than in reading. Most parts fit the small ones, which keeps the
// large ones (and the memory they hold) few.
var (
	peekSmall = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}
	peekLarge = sync.Pool{New: func() any { b := make([]byte, maxPeek); return &b }}
)

// copyLeaf copies a part that gets no notice (an attachment, an image),
// re-encoding it as base64 when it has lines too long to send as they are.
func copyLeaf(w io.Writer, h textproto.Header, body io.Reader) error {
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	if !unencoded(cte) {
		return copyEntity(w, h, body)
	}
	whole, long, release, err := peekLongLine(body)
	if err != nil {
		return err
	}
	defer release()
	body = whole
	if !long {
		return copyEntity(w, h, body)
	}
	h.Set("Content-Transfer-Encoding", "base64")
	if err := textproto.WriteHeader(w, h); err != nil {
		return err
	}
	enc := newBase64Lines(w)
	if _, err := io.Copy(enc, body); err != nil {
		return err
	}
	return enc.Close()
}

// ErrLineTooLong is returned when a message would go out with a line over
// 998 octets that could not be re-encoded (inside a signed or encrypted
// part, or past what is examined in memory).
var ErrLineTooLong = errors.New("a line is longer than 998 octets in a part that cannot be re-encoded")

// lineGuard passes writes on and fails at the first line over 998 octets.
type lineGuard struct {
	w   io.Writer
	cur int // octets since the last LF
}

func (g *lineGuard) Write(p []byte) (int, error) {
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			g.cur += len(rest)
			break
		}
		if g.cur+i > maxLine+1 {
			return 0, ErrLineTooLong
		}
		g.cur = 0
		rest = rest[i+1:]
	}
	if g.cur > maxLine+1 {
		return 0, ErrLineTooLong
	}
	return g.w.Write(p)
}
