package rules

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/bufpool"
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
	guarded := &lineLimitWriter{w: bw}
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

// newBoundary makes the boundary of a multipart the transform creates;
// random, so no content can contain it (tests fix it for golden files).
var newBoundary = func() string { return "sealpost-" + randomHex(12) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
