package rules

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message"
)

// Limits of the content rules' reading of a message that would go out in
// clear: beyond them the message is refused, never passed unread.
const (
	maxScannedText  = 16 << 20 // decoded text, all parts together
	maxScannedDepth = maxMIMEDepth
	maxScannedParts = maxMIMEParts
)

var (
	errTooMuchToScan = errors.New("too much to check")
	errRuleFired     = errors.New("the first rule fired")
)

// What the content rules read in a copy that goes to a client in clear:
//
//   - the subject, and the Comments, Keywords and Thread-Topic fields;
//   - every text/* part and every part whose type is missing or cannot be
//     parsed, wherever it is (after the first part, inside multipart/signed,
//     attachments), its transfer encoding and charset undone; HTML both as
//     its source and as the text a reader sees (see renderHTML);
//   - messages inside the message (message/rfc822 and message/global: a
//     forward as attachment), to the depth limit, like the message itself:
//     their subjects, address fields and other text fields, and their parts;
//     other message/* parts are read as text;
//   - messages attached as files (a .eml file name, application/eml);
//   - parts that claim to be encrypted but are not (application/pkcs7-mime,
//     application/pgp-encrypted, and application/octet-stream inside
//     multipart/encrypted, when they fail the checks a message encrypted as
//     a whole passes: verifyCMSEnveloped, verifyArmoredMessage): read as
//     text, as sent; the entity inside opaque-signed S/MIME
//     (application/pkcs7-mime signed-data) like a forwarded message;
//   - each part's Content-Description and file name.
//
// Every text is read as it is and as a reader reads it (readerText). Not
// read: other attachments (PDF, images, office documents, zip and other
// archives, Outlook's .msg and winmail.dat, calendar data sent as
// application/*), parts that are encrypted, and the practice's own notice.
type contentScan struct {
	rules       []compiledRule
	noticeForms [][]byte // the notice as the transform writes it: taken out before reading
	left        int64    // octets of text still to be read before maxScannedText
	parts       int      // parts read so far, against maxScannedParts
	hit         int      // the first rule, in configured order, that fired so far; len(rules): none
	where       string   // where it fired
}

func newContentScan(rules []compiledRule, notice *noticeText) *contentScan {
	c := &contentScan{rules: rules, left: maxScannedText, hit: len(rules)}
	for _, n := range []string{notice.plain, notice.flowed, notice.html} {
		if n != "" {
			c.noticeForms = append(c.noticeForms, []byte(strings.ReplaceAll(n, "\r\n", "\n")))
		}
	}
	return c
}

// scan reads a whole message. It stops early once the first rule fired.
func (c *contentScan) scan(r io.Reader) error {
	err := c.message(r, 0, true)
	if errors.Is(err, errRuleFired) {
		return nil
	}
	return err
}

// fired returns the rule that fired, or nil.
func (c *contentScan) fired() (*compiledRule, string) {
	if c.hit == len(c.rules) {
		return nil, ""
	}
	return &c.rules[c.hit], c.where
}

// matchRules runs the rules that come before the one that fired so far.
func (c *contentScan) matchRules(where string, text []byte) {
	for i := 0; i < c.hit; i++ {
		r := &c.rules[i]
		if (r.On == "any" || r.On == where) && r.re.Match(text) {
			c.hit, c.where = i, where
			return
		}
	}
}

// matchText matches text as sent and as a reader reads it; errRuleFired
// once the first rule has fired, when nothing more need be read.
func (c *contentScan) matchText(where string, text []byte) error {
	c.matchRules(where, text)
	if c.hit > 0 {
		rt, err := readerText(text)
		if err != nil {
			return err
		}
		if !bytes.Equal(rt, text) {
			c.matchRules(where, rt)
		}
	}
	if c.hit == 0 {
		return errRuleFired
	}
	return nil
}

// take counts n octets of text against the limit.
func (c *contentScan) take(n int) error {
	if int64(n) > c.left {
		return errTooMuchToScan
	}
	c.left -= int64(n)
	return nil
}

func (c *contentScan) headerText(where, v string) error {
	t := []byte(decodeHeaderText(v))
	if err := c.take(len(t)); err != nil {
		return err
	}
	return c.matchText(where, t)
}

// message reads a message: the top level, or one inside it.
func (c *contentScan) message(r io.Reader, depth int, outer bool) error {
	e, _ := message.Read(r)
	if e == nil {
		if outer {
			return &mimeError{"its header cannot be read"}
		}
		return &mimeError{"a forwarded message in it cannot be read"}
	}
	return c.messageEntity(e, depth, outer)
}

func (c *contentScan) messageEntity(e *message.Entity, depth int, outer bool) error {
	fields := []string{"Comments", "Keywords", "Thread-Topic"}
	subject := "subject"
	if !outer {
		// A forwarded message's fields are part of what this message
		// says, not its subject line.
		subject = "body"
		fields = append(fields, "From", "Sender", "Reply-To", "To", "Cc")
	}
	for _, v := range e.Header.Values("Subject") {
		if err := c.headerText(subject, v); err != nil {
			return err
		}
	}
	for _, k := range fields {
		for _, v := range e.Header.Values(k) {
			if err := c.headerText("body", v); err != nil {
				return err
			}
		}
	}
	return c.entity(e, depth, "")
}

// entity reads one part and what is inside it.
func (c *contentScan) entity(e *message.Entity, depth int, parent string) error {
	c.parts++
	if depth > maxScannedDepth || c.parts > maxScannedParts {
		return errTooMuchToScan
	}
	mt, params, err := e.Header.ContentType()
	if err != nil || e.Header.Get("Content-Type") == "" {
		// No type, or one that cannot be read: read it as text rather
		// than let it pass unread.
		mt, params = "text/plain", map[string]string{}
	}
	if err := c.partFields(e.Header, params); err != nil {
		return err
	}
	if strings.HasPrefix(mt, "multipart/") {
		if mr := e.MultipartReader(); mr != nil {
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					return nil
				}
				if p == nil {
					return err
				}
				if err := c.entity(p, depth+1, mt); err != nil {
					return err
				}
			}
		}
	}
	switch {
	case mt == "message/rfc822" || mt == "message/global":
		return c.message(e.Body, depth+1, false)
	case isAttachedMessage(mt, e.Header, params):
		return c.attachedMessage(e.Body, depth+1)
	case strings.HasPrefix(mt, "text/") || strings.HasPrefix(mt, "message/") || strings.HasPrefix(mt, "multipart/"):
		b, err := c.readText(e.Body)
		if err != nil {
			return err
		}
		if mt == "text/html" {
			return c.htmlPart(b)
		}
		return c.matchText("body", b)
	case claimsEncryption(mt, parent):
		return c.claimedEncryption(e.Body, mt, depth)
	}
	return nil
}

// isAttachedMessage: a message attached as a file (a .eml file name, or a
// type some programs give it) rather than as message/rfc822.
func isAttachedMessage(mt string, h message.Header, params map[string]string) bool {
	switch mt {
	case "application/eml", "application/x-eml", "message/x-eml":
		return true
	}
	if !strings.HasPrefix(mt, "application/") {
		return false
	}
	name := params["name"]
	if _, dp, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil && dp["filename"] != "" {
		name = dp["filename"]
	}
	return strings.HasSuffix(strings.ToLower(strings.TrimSpace(decodeHeaderText(name))), ".eml")
}

// attachedMessage reads a message attached as a file, or its bytes as text
// when they are not one.
func (c *contentScan) attachedMessage(body io.Reader, depth int) error {
	b, err := c.readText(body)
	if err != nil {
		return err
	}
	if e, _ := message.Read(bytes.NewReader(b)); e != nil {
		return c.messageEntity(e, depth, false)
	}
	return c.matchText("body", b)
}

// partFields reads a part's description and file name: the recipient's
// mail program shows both.
func (c *contentScan) partFields(h message.Header, ctParams map[string]string) error {
	if v := h.Get("Content-Description"); v != "" {
		if err := c.headerText("body", v); err != nil {
			return err
		}
	}
	if _, dp, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil && dp["filename"] != "" {
		if err := c.headerText("body", dp["filename"]); err != nil {
			return err
		}
	}
	if ctParams["name"] != "" {
		return c.headerText("body", ctParams["name"])
	}
	return nil
}

// readText reads a decoded text body, counted against the limit, with line
// ends as LF and the practice's notice taken out.
func (c *contentScan) readText(body io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(body, c.left+1))
	if err != nil {
		return nil, err
	}
	if err := c.take(len(b)); err != nil {
		return nil, err
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	for _, d := range c.noticeForms {
		b = bytes.ReplaceAll(b, d, nil)
	}
	return b, nil
}

// htmlPart reads an HTML part as sent and as rendered: with hidden elements
// left out (text hidden between the digits of a number), and with them in
// (a hidden element that, by this simple reading, never ends).
func (c *contentScan) htmlPart(src []byte) error {
	if err := c.matchText("body", src); err != nil {
		return err
	}
	shown := renderHTML(src, true)
	if err := c.matchText("body", shown); err != nil {
		return err
	}
	if all := renderHTML(src, false); !bytes.Equal(all, shown) {
		return c.matchText("body", all)
	}
	return nil
}

// claimsEncryption: parts that say they are encrypted. Those that are go
// unread; the others are read as text.
func claimsEncryption(mt, parent string) bool {
	switch mt {
	case "application/pkcs7-mime", "application/x-pkcs7-mime", "application/pgp-encrypted":
		return true
	case "application/octet-stream":
		return parent == "multipart/encrypted"
	}
	return false
}

// claimedEncryption reads a part that claims to be encrypted: nothing when
// it passes the checks of a whole encrypted message's body, the entity
// inside opaque-signed S/MIME, and otherwise its bytes as text.
func (c *contentScan) claimedEncryption(body io.Reader, mt string, depth int) error {
	var buf cappedBuffer
	buf.max = int(c.left)
	var verr error
	switch mt {
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		buf.max = maxEncryptedDER
		if _, err := io.Copy(&buf, body); err != nil {
			return err
		}
		verr = verifyCMSEnveloped(buf.Bytes(), "")
		if content, ok := cmsSignedContent(buf.Bytes()); verr != nil && !buf.over && ok {
			// Opaque-signed S/MIME: the signed entity is in clear inside.
			return c.message(bytes.NewReader(content), depth+1, false)
		}
	case "application/octet-stream":
		verr = verifyArmoredMessage(io.TeeReader(body, &buf))
	default:
		verr = errNotEncrypted
	}
	if verr == nil {
		return nil
	}
	if _, err := io.Copy(&buf, body); err != nil {
		return err
	}
	if buf.over {
		return errTooMuchToScan
	}
	if err := c.take(buf.Len()); err != nil {
		return err
	}
	return c.matchText("body", bytes.ReplaceAll(buf.Bytes(), []byte("\r\n"), []byte("\n")))
}

// cappedBuffer keeps up to max octets and notes that there were more.
type cappedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
