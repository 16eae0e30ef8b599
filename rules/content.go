package rules

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/text/unicode/norm"
)

// Limits of the content rules' reading of a message that would go out in
// clear: beyond them the message is refused, never passed unread.
const (
	maxScannedText  = 16 << 20 // decoded text, all parts together
	maxScannedDepth = maxMIMEDepth
	maxScannedParts = maxMIMEParts
	// What a reader reads may be at most this many times longer than the
	// text it comes from (NFKC expands a few characters up to 18 times;
	// no text anyone writes comes near).
	maxReaderTextGrowth = 4
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
//     multipart/encrypted, when they fail the checks of encrypted.go): read
//     as text, as sent; the entity inside opaque-signed S/MIME
//     (application/pkcs7-mime signed-data) like a forwarded message;
//   - each part's Content-Description and file name.
//
// Every text is read as it is and as a reader reads it (readerText). Not
// read: other attachments (PDF, images, office documents, zip and other
// archives, Outlook's .msg and winmail.dat, calendar data sent as
// application/*), parts that are encrypted, and the practice's own notice.
type contentScan struct {
	rules []compiledRule
	drops [][]byte // the notice as the transform writes it
	left  int64
	parts int
	hit   int    // the first rule, in configured order, that fired so far; len(rules): none
	where string // where it fired
}

func newContentScan(rules []compiledRule, notice *noticeText) *contentScan {
	c := &contentScan{rules: rules, left: maxScannedText, hit: len(rules)}
	for _, n := range []string{notice.plain, notice.flowed, notice.html} {
		if n != "" {
			c.drops = append(c.drops, []byte(strings.ReplaceAll(n, "\r\n", "\n")))
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

func (c *contentScan) match(where string, text []byte) {
	for i := 0; i < c.hit; i++ {
		r := &c.rules[i]
		if (r.On == "any" || r.On == where) && r.re.Match(text) {
			c.hit, c.where = i, where
			return
		}
	}
}

// sample matches text as sent and as a reader reads it.
func (c *contentScan) sample(where string, text []byte) error {
	c.match(where, text)
	if c.hit > 0 {
		rt, err := readerText(text)
		if err != nil {
			return err
		}
		if !bytes.Equal(rt, text) {
			c.match(where, rt)
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
	return c.sample(where, t)
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
	case attachedMessage(mt, e.Header, params):
		return c.attachedMessage(e.Body, depth+1)
	case strings.HasPrefix(mt, "text/") || strings.HasPrefix(mt, "message/") || strings.HasPrefix(mt, "multipart/"):
		b, err := c.readText(e.Body)
		if err != nil {
			return err
		}
		if mt == "text/html" {
			return c.html(b)
		}
		return c.sample("body", b)
	case claimsEncryption(mt, parent):
		return c.claimed(e.Body, mt, depth)
	}
	return nil
}

// attachedMessage: a message attached as a file (a .eml file name, or a
// type some programs give it) rather than as message/rfc822.
func attachedMessage(mt string, h message.Header, params map[string]string) bool {
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
	return c.sample("body", b)
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
	for _, d := range c.drops {
		b = bytes.ReplaceAll(b, d, nil)
	}
	return b, nil
}

// html reads an HTML part as sent and as rendered: with hidden elements
// left out (text hidden between the digits of a number), and with them in
// (a hidden element that, by this simple reading, never ends).
func (c *contentScan) html(src []byte) error {
	if err := c.sample("body", src); err != nil {
		return err
	}
	shown := renderHTML(src, true)
	if err := c.sample("body", shown); err != nil {
		return err
	}
	if all := renderHTML(src, false); !bytes.Equal(all, shown) {
		return c.sample("body", all)
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

func (c *contentScan) claimed(body io.Reader, mt string, depth int) error {
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
	return c.sample("body", bytes.ReplaceAll(buf.Bytes(), []byte("\r\n"), []byte("\n")))
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

// renderHTML is the text a reader sees in an HTML part: tags and comments
// (CDATA sections too, which HTML reads as comments) gone, character
// references decoded, script and style left out (with dropHidden, also the
// elements that inline CSS or the hidden attribute hide), block elements
// and line breaks as new lines, table cells apart, and the alt and title
// texts of elements (shown for blocked images and on hovering). The
// tokenizer reads the source once; what it writes is never longer than
// three times it (a NUL, or a reference to an invalid character, becomes
// U+FFFD).
func renderHTML(src []byte, dropHidden bool) []byte {
	var out bytes.Buffer
	out.Grow(len(src) / 2)
	renderHTMLInto(&out, src, 0, dropHidden)
	return out.Bytes()
}

// The contents of these elements is raw text to the tokenizer, but HTML to
// a mail program, which runs no scripts and shows no frames.
var reparsed = map[atom.Atom]bool{atom.Noscript: true, atom.Noembed: true, atom.Noframes: true, atom.Iframe: true}

const maxReparse = 4

func renderHTMLInto(out *bytes.Buffer, src []byte, depth int, dropHidden bool) {
	z := html.NewTokenizer(bytes.NewReader(src))
	var raw atom.Atom // the element whose raw text comes next
	var hidden []byte // the element whose contents is hidden
	hiddenDepth := 0  // how many of it are open
	var alts [][]byte // alt and title texts of the current tag
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return
		case html.TextToken:
			text := z.Text()
			switch {
			case hiddenDepth > 0, raw == atom.Script, raw == atom.Style:
			case reparsed[raw] && depth < maxReparse:
				renderHTMLInto(out, text, depth+1, dropHidden)
			default:
				out.Write(text)
			}
			raw = 0
		case html.StartTagToken, html.SelfClosingTagToken:
			name, more := z.TagName()
			a := atom.Lookup(name)
			raw = a
			isHidden := false
			alts = alts[:0]
			for more {
				var k, v []byte
				k, v, more = z.TagAttr()
				switch string(k) {
				case "alt", "title":
					if len(v) > 0 {
						alts = append(alts, v)
					}
				case "hidden":
					isHidden = true
				case "style":
					isHidden = isHidden || hiddenStyle(v)
				}
			}
			if hiddenDepth > 0 {
				if tt == html.StartTagToken && bytes.Equal(name, hidden) {
					hiddenDepth++
				}
				continue
			}
			if isHidden && dropHidden {
				if tt == html.StartTagToken && !voidElements[a] {
					hidden, hiddenDepth = append(hidden[:0], name...), 1
				}
				continue
			}
			for _, v := range alts {
				out.WriteByte(' ')
				out.Write(v)
				out.WriteByte(' ')
			}
			breakAfter(out, a)
		case html.EndTagToken:
			name, _ := z.TagName()
			raw = 0
			if hiddenDepth > 0 {
				if bytes.Equal(name, hidden) {
					hiddenDepth--
				}
				continue
			}
			breakAfter(out, atom.Lookup(name))
		default: // comments, CDATA read as comments, doctypes
			raw = 0
		}
	}
}

// Elements that have no end tag: hidden, they hide nothing after them.
var voidElements = map[atom.Atom]bool{atom.Area: true, atom.Base: true, atom.Br: true, atom.Col: true, atom.Embed: true,
	atom.Hr: true, atom.Img: true, atom.Input: true, atom.Link: true, atom.Meta: true, atom.Source: true, atom.Track: true, atom.Wbr: true}

// hiddenStyle: inline CSS that hides an element's text from the reader
// (what mail programs honour; style sheets are not followed).
func hiddenStyle(v []byte) bool {
	css := strings.ToLower(strings.Join(strings.Fields(string(v)), ""))
	for _, d := range strings.Split(css, ";") {
		switch d {
		case "display:none", "visibility:hidden", "mso-hide:all", "font-size:0", "font-size:0px", "font-size:0pt",
			"font-size:0em", "font-size:0%", "opacity:0", "max-height:0", "max-height:0px":
			return true
		}
		if strings.HasSuffix(d, "!important") {
			if hiddenStyle([]byte(strings.TrimSuffix(d, "!important"))) {
				return true
			}
		}
	}
	return false
}

func breakAfter(out *bytes.Buffer, a atom.Atom) {
	switch a {
	case atom.Td, atom.Th:
		out.WriteByte(' ')
	case atom.Address, atom.Article, atom.Aside, atom.Blockquote, atom.Body, atom.Br, atom.Caption, atom.Center,
		atom.Dd, atom.Details, atom.Dialog, atom.Div, atom.Dl, atom.Dt, atom.Fieldset, atom.Figcaption, atom.Figure,
		atom.Footer, atom.Form, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Head, atom.Header,
		atom.Hr, atom.Html, atom.Legend, atom.Li, atom.Main, atom.Nav, atom.Ol, atom.Option, atom.P, atom.Pre,
		atom.Section, atom.Summary, atom.Table, atom.Tbody, atom.Tfoot, atom.Thead, atom.Title, atom.Tr, atom.Ul:
		out.WriteByte('\n')
	}
}

// readerText is text as a reader reads it: compatibility forms folded
// (NFKC: fullwidth and mathematical digits, ligatures, no-break and other
// spaces), every Unicode dash and minus sign as '-', every space as ' ',
// line and paragraph separators as new lines, digits of other scripts as
// ASCII digits, invisible format characters (zero-width spaces and joiners,
// soft hyphens, direction marks, byte order marks) removed, and combining
// marks on digits, dashes and spaces dropped. Bytes that are not UTF-8 stay
// as they are, so that ASCII patterns still match in text of an unknown
// charset, except Windows-1252's no-break space, soft hyphen and dashes.
func readerText(b []byte) ([]byte, error) {
	if isASCIIBytes(b) {
		return b, nil
	}
	mapped := mapReaderRunes(make([]byte, 0, len(b)), b)
	limit := maxReaderTextGrowth*len(b) + 1024
	folded, err := io.ReadAll(io.LimitReader(norm.NFKC.Reader(bytes.NewReader(mapped)), int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(folded) > limit {
		return nil, errTooMuchToScan
	}
	// Folding makes dashes and spaces of its own (U+FE58 is U+2014).
	return mapReaderRunes(mapped[:0], folded), nil
}

func mapReaderRunes(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(src[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			// Windows-1252 in a part that does not say so: its no-break
			// space, soft hyphen and dashes.
			switch c {
			case 0xa0:
				dst = append(dst, ' ')
			case 0xad:
			case 0x96, 0x97:
				dst = append(dst, '-')
			default:
				dst = append(dst, c)
			}
		case unicode.Is(unicode.Cf, r):
		case unicode.Is(unicode.Mn, r) && len(dst) > 0 && strings.IndexByte("0123456789- ", dst[len(dst)-1]) >= 0:
			// A mark over a digit, dash or space does not change what is read.
		case unicode.Is(unicode.Pd, r), r == '\u2212', r == '\u2043', r == '\u02d7', r == '\u2796', r == '\ufe63':
			dst = append(dst, '-')
		case unicode.Is(unicode.Zs, r):
			dst = append(dst, ' ')
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\n')
		case unicode.Is(unicode.Nd, r):
			dst = append(dst, '0'+digitValue(r))
		default:
			dst = append(dst, src[i:i+size]...)
		}
		i += size
	}
	return dst
}

// digitValue of a decimal digit: Unicode keeps each script's digits as a
// run from zero to nine (checked in the tests for the whole table).
func digitValue(r rune) byte {
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return byte((r - rune(rg.Lo)) % 10)
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return byte((r - rune(rg.Lo)) % 10)
		}
	}
	return 0
}
