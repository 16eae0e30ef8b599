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

// The notice transform writes the copy of a message that its recipients
// read: without Bcc, with the practice's notice where they will read it. It
// walks the MIME tree once, as a stream:
//
//   - the text a recipient reads (a text/plain or text/html message, the
//     first part of a multipart, every version of an alternative) gets the
//     notice in its own charset and transfer encoding (textparts.go); when
//     no part of a multipart can take it, the notice is a part of its own
//     after the others;
//   - attachments, and parts the sender's client signed or encrypted, are
//     copied as they are (attachments re-encoded only when their lines are
//     too long to send: longline.go);
//   - a message signed as a whole, or one that is not text or whose text
//     cannot hold the notice, is kept byte for byte as the first part of a
//     new multipart/mixed whose second part is the notice;
//   - a message encrypted as a whole is copied as it is; verifyEncrypted
//     (encrypted.go) then says whether it is, and when it is not,
//     transformClaimed makes the copy again like that of any clear message.

// MIME limits: go-message has none of its own, and a message nested 20,000
// deep would otherwise take a minute and gigabytes to walk.
const (
	maxMIMEDepth = 100
	maxMIMEParts = 1000
)

// transformResult is what the notice transform learnt about the message.
type transformResult struct {
	header    textproto.Header // the top-level header as written
	protected string           // "encrypted", "signed" or "opaque": the sender's client protected the message as a whole, and it is kept so
	noticed   bool             // the notice is in the message (added, or there already)
}

// mimeError is a message whose structure cannot be transformed safely.
type mimeError struct{ reason string }

func (e *mimeError) Error() string { return e.reason }

// transformNotice copies the message from r to w with the notice appended
// where the recipient will read it, and without any Bcc header. Headers it
// does not need to change stay byte for byte; attachments and the parts a
// sender signed or encrypted are copied, never decoded. A message that
// claims to be encrypted as a whole is copied as it is (protected
// "encrypted"): verifyEncrypted must then say whether it is.
func transformNotice(w io.Writer, r io.Reader, n *noticeText) (*transformResult, error) {
	return transform(w, r, n, true, nil)
}

// headerEdit changes a message's top-level header before it is written
// (the practice's Autocrypt key: autocrypt.go).
type headerEdit func(h *textproto.Header)

// transformClaimed is transformNotice for a message whose claim to be
// encrypted did not hold: it is handled like any clear message. Inline
// text gets the notice, a multipart/encrypted is read as the multipart it
// is, and an S/MIME body, which is one piece, is kept whole beside the
// notice.
func transformClaimed(w io.Writer, r io.Reader, n *noticeText) (*transformResult, error) {
	return transform(w, r, n, false, nil)
}

// transform is transformNotice (passThrough) or transformClaimed, with
// edit (if any) applied to the top-level header.
func transform(w io.Writer, r io.Reader, n *noticeText, passThrough bool, edit headerEdit) (*transformResult, error) {
	br := bufpool.Reader(r)
	defer bufpool.PutReader(br)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, &mimeError{"its header cannot be read"}
	}
	h.Del("Bcc")
	if edit != nil {
		edit(&h)
	}
	res := &transformResult{}
	t := &noticeTransform{n: n}
	bw := bufpool.Writer(w)
	defer bufpool.PutWriter(bw)
	// Lines over 998 octets are refused wherever they cannot be re-encoded;
	// a copy passed through unguarded is checked by verifyEncrypted.
	guarded := &lineLimitWriter{w: bw}
	mt, params := contentType(h)
	prot := clientProtection(mt, params, h)
	if prot == "" && mt == "text/plain" && !isAttachment(h) {
		prot = inlinePGPProtection(br)
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

// noticeTransform is one run of the notice transform over a message.
type noticeTransform struct {
	n     *noticeText
	parts int // parts seen so far, against maxMIMEParts
	// claimOpened: the top-level multipart/encrypted did not hold what it
	// claimed, and is read as the multipart it is.
	claimOpened bool
}

// entity writes one MIME entity with the notice added in the text the
// recipient reads. It reports whether the notice went in.
func (t *noticeTransform) entity(w io.Writer, h textproto.Header, body io.Reader, depth int) (bool, error) {
	if depth > maxMIMEDepth {
		return false, &mimeError{fmt.Sprintf("its parts are nested more than %d deep", maxMIMEDepth)}
	}
	mt, params := contentType(h)
	if clientProtection(mt, params, h) != "" && !(depth == 0 && t.claimOpened) {
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
func (t *noticeTransform) multipart(w io.Writer, h textproto.Header, body io.Reader, params map[string]string, depth int, alternative bool) (bool, error) {
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
		if strings.HasPrefix(pmt, "multipart/") || clientProtection(pmt, pparams, p.Header) != "" {
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

// wrapWithNotice turns the top-level entity into the first part of a
// multipart/mixed whose second part is the notice. The entity's bytes, and
// its content headers, are kept exactly: a signature over them still holds.
func (t *noticeTransform) wrapWithNotice(w io.Writer, h textproto.Header, body io.Reader) error {
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

// canHoldNotice says whether a text entity can take the notice in place:
// its charset can express it, or can at least be decoded and re-encoded.
func (t *noticeTransform) canHoldNotice(mt string, params map[string]string) bool {
	switch mt {
	case "text/plain":
		if _, ok := encodeInCharset(t.n.plain, params["charset"]); ok {
			return true
		}
		_, known := lookupCharset(params["charset"])
		return known
	case "text/html":
		return asciiCompatible(params["charset"])
	}
	return true
}

// isContentHeader: the fields that describe the entity rather than the
// message; wrapping moves them into the inner part.
func isContentHeader(k string) bool {
	k = strings.ToLower(k)
	return strings.HasPrefix(k, "content-")
}

// contentType is an entity's media type, lower case, and its parameters:
// text/plain when it says none (RFC 2045 5.2), opaque data when it cannot be
// parsed.
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

// isAttachment: the sender marked the entity as a file to save, not text
// to read.
func isAttachment(h textproto.Header) bool {
	d, _, err := mime.ParseMediaType(h.Get("Content-Disposition"))
	return err == nil && d == "attachment"
}

// clientProtection says whether the sender's client signed or encrypted
// the entity: "encrypted" only where that is certain, for such a message
// goes to key holders as it is; "signed"; "opaque": kept whole, as a signed
// one is; "" when the client protected nothing.
func clientProtection(mt string, params map[string]string, h textproto.Header) string {
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

// inlinePGPProtection looks at the start of a text/plain body for an armored PGP
// message: "encrypted" (to be verified) when the body begins with one,
// "signed" when it begins with a clear-signed message.
func inlinePGPProtection(br *bufio.Reader) string {
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

// isBodyCandidate: an entity that can be, or can hold, the text the
// recipient reads.
func isBodyCandidate(mt string, h textproto.Header) bool {
	if isAttachment(h) {
		return false
	}
	return mt == "text/plain" || mt == "text/html" || strings.HasPrefix(mt, "multipart/")
}

// copyEntity writes an entity as it is.
func copyEntity(w io.Writer, h textproto.Header, body io.Reader) error {
	if err := textproto.WriteHeader(w, h); err != nil {
		return err
	}
	_, err := io.Copy(w, body)
	return err
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
var newBoundary = func() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "sealpost-" + hex.EncodeToString(b)
}
