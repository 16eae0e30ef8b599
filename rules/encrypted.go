package rules

import (
	"bufio"
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/bufpool"
)

// A message the sender's client claims to have encrypted goes to key holders
// as it is only when its structure is that of an encrypted message, checked
// without decrypting anything:
//
//   - PGP/MIME (RFC 3156): multipart/encrypted with protocol
//     application/pgp-encrypted, exactly two parts: application/pgp-encrypted
//     holding "Version: 1", then application/octet-stream holding one armored
//     PGP MESSAGE that passes the packet test below. The preamble may hold
//     only the usual one-line explanation that clients write there, the
//     epilogue nothing but blank lines.
//   - inline OpenPGP: a text/plain body that is one armored PGP MESSAGE and
//     nothing else.
//   - S/MIME: application/pkcs7-mime with smime-type enveloped-data (or
//     authenveloped-data) whose body is a CMS ContentInfo of that type with a
//     well-formed EnvelopedData (AuthEnvelopedData): known version, at least
//     one RecipientInfo, encrypted content under a known content-encryption
//     algorithm, nothing after it.
//
// The packet test: one or more session-key packets (tag 1 PKESK, tag 3
// SKESK), then exactly one encrypted-data packet, then nothing. Encrypted
// data is SEIPD (tag 18, v1 or v2) or AEAD Encrypted Data (tag 20, what
// GnuPG writes for keys that ask for OCB): both are integrity protected. The
// legacy Symmetrically Encrypted Data packet (tag 9) has no integrity
// protection and RFC 9580 forbids decrypting it: a message made of it is
// encrypted again by sealpost like any other.
//
// What cannot be checked this way: that the encrypted packets hold
// ciphertext rather than bytes a client put there in clear. The check is
// against mislabelled messages, not against a sender who builds packets by
// hand.

// errNotEncrypted is wrapped by every reason a claimed encryption fails.
var errNotEncrypted = errors.New("not encrypted")

func notEncrypted(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errNotEncrypted, fmt.Sprintf(format, args...))
}

// Kinds of client encryption that pass through.
const (
	kindPGPMIME     = "PGP/MIME"
	kindInlinePGP   = "inline OpenPGP"
	kindSMIME       = "S/MIME"
	maxEncryptedDER = 64 << 20 // larger than any message the relay takes
)

// verifyEncrypted reads a whole message and reports what kind of client
// encryption it is, or an error (wrapping errNotEncrypted; an error of r's
// is among them) when it is not certainly encrypted as a whole. Lines over
// 998 octets fail it: a message passed through must be sendable as it is.
func verifyEncrypted(r io.Reader) (string, error) {
	kind, err := verifyEncryptedMessage(r)
	if err != nil && !errors.Is(err, errNotEncrypted) {
		err = fmt.Errorf("%w: %w", errNotEncrypted, err)
	}
	return kind, err
}

func verifyEncryptedMessage(r io.Reader) (string, error) {
	br := bufpool.Reader(&lineLimitReader{r: r})
	defer bufpool.PutReader(br)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return "", notEncrypted("header: %v", err)
	}
	mt, params := contentType(h)
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	switch mt {
	case "multipart/encrypted":
		if !strings.EqualFold(params["protocol"], "application/pgp-encrypted") {
			return "", notEncrypted("multipart/encrypted of protocol %q", params["protocol"])
		}
		if !unencoded(cte) {
			return "", notEncrypted("multipart with transfer encoding %q", cte)
		}
		return kindPGPMIME, verifyPGPMIME(br, params["boundary"])
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		return kindSMIME, verifySMIME(br, params["smime-type"], cte)
	case "text/plain":
		if isAttachment(h) || !unencoded(cte) {
			return "", notEncrypted("text/plain attachment or transfer encoding %q", cte)
		}
		return kindInlinePGP, verifyArmoredMessage(br)
	}
	return "", notEncrypted("type %s", mt)
}

// lineLimitReader fails at the first line over 998 octets.
type lineLimitReader struct {
	r   io.Reader
	cur int
}

var errLongLineRead = errors.New("a line is longer than 998 octets")

func (l *lineLimitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	rest := p[:n]
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			l.cur += len(rest)
			break
		}
		if l.cur+i > maxLine+1 {
			return 0, notEncrypted("%v", errLongLineRead)
		}
		l.cur = 0
		rest = rest[i+1:]
	}
	if l.cur > maxLine+1 {
		return 0, notEncrypted("%v", errLongLineRead)
	}
	return n, err
}

// knownPreambles are the explanations clients write before the first part
// of a PGP/MIME message, for readers that do not understand MIME. Any other
// text there would travel in clear beside the encrypted part.
var knownPreambles = map[string]bool{
	"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)": true, // Thunderbird, Enigmail, GpgOL, Proton
	"This is an OpenPGP/MIME encrypted message (RFC 2440 and 3156)": true, // GPGTools, older Enigmail
	"This is an OpenPGP/MIME encrypted message":                     true,
	"This is a multi-part message in MIME format.":                  true,
	"This is a multi-part message in MIME format":                   true,
	"This is a MIME-encapsulated message":                           true,
	"This is a MIME-encapsulated message.":                          true,
}

// maxPartHeader bounds a PGP/MIME part's header: they are a few fields.
const maxPartHeader = 4 << 10

// verifyPGPMIME checks the body of a multipart/encrypted message line by
// line. It is stricter than MIME parsers are: any line that begins with the
// delimiter must be exactly a delimiter, so that no reader can see a part
// this check did not.
func verifyPGPMIME(br *bufio.Reader, boundary string) error {
	if boundary == "" || len(boundary) > 70 {
		return notEncrypted("boundary %q", boundary)
	}
	mp := &mimeLines{br: br, dash: []byte("--" + boundary)}
	// Preamble.
	for {
		line, kind, err := mp.next()
		if err != nil {
			return err
		}
		if kind == lineDelimiter {
			break
		}
		if kind == lineClose {
			return notEncrypted("no parts")
		}
		if t := strings.TrimSpace(string(line)); t != "" && !knownPreambles[t] {
			return notEncrypted("text in the preamble")
		}
	}
	// Part 1: the version.
	h, err := mp.partHeader()
	if err != nil {
		return err
	}
	if mt, _ := contentType(h); mt != "application/pgp-encrypted" || !onlyContentFields(h) {
		return notEncrypted("first part is %s", mt)
	}
	body := &partReader{m: mp}
	version, err := io.ReadAll(io.LimitReader(body, 256))
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(version)) != "Version: 1" || !body.ended() || body.end != lineDelimiter {
		return notEncrypted("first part is not Version: 1, or the only part")
	}
	// Part 2: the encrypted message.
	h, err = mp.partHeader()
	if err != nil {
		return err
	}
	if mt, _ := contentType(h); mt != "application/octet-stream" || !onlyContentFields(h) {
		return notEncrypted("second part is %s", mt)
	}
	body = &partReader{m: mp}
	dec, err := decodeCTE(body, strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))))
	if err != nil {
		return notEncrypted("transfer encoding")
	}
	if err := verifyArmoredMessage(dec); err != nil {
		return err
	}
	if !body.ended() || body.end != lineClose {
		return notEncrypted("more than two parts")
	}
	// Epilogue.
	for {
		line, kind, err := mp.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if kind != lineText || strings.TrimSpace(string(line)) != "" {
			return notEncrypted("text after the last part")
		}
	}
}

// onlyContentFields: a part of an encrypted message has no business with
// fields other than the Content-* ones describing it.
func onlyContentFields(h textproto.Header) bool {
	f := h.Fields()
	for f.Next() {
		if !isContentHeader(f.Key()) {
			return false
		}
	}
	return true
}

type lineKind int

const (
	lineText lineKind = iota
	lineDelimiter
	lineClose
)

// mimeLines reads a multipart body a line at a time.
type mimeLines struct {
	br   *bufio.Reader
	dash []byte // "--" + boundary
}

// next returns the next line without its line end, and whether it is a
// delimiter. A line that starts with the delimiter but is not exactly one
// is an error.
func (m *mimeLines) next() ([]byte, lineKind, error) {
	line, err := m.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, 0, notEncrypted("%v", errLongLineRead)
	}
	if err == io.EOF && len(line) > 0 {
		err = nil
	}
	if err != nil {
		return nil, 0, err
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if !bytes.HasPrefix(line, m.dash) {
		return line, lineText, nil
	}
	rest := bytes.TrimRight(line[len(m.dash):], " \t")
	switch string(rest) {
	case "":
		return line, lineDelimiter, nil
	case "--":
		return line, lineClose, nil
	}
	return nil, 0, notEncrypted("a line that begins like the boundary")
}

func (m *mimeLines) partHeader() (textproto.Header, error) {
	var raw []byte
	for {
		line, kind, err := m.next()
		if err == io.EOF {
			return textproto.Header{}, notEncrypted("the message ends in a part header")
		}
		if err != nil {
			return textproto.Header{}, err
		}
		if kind != lineText {
			return textproto.Header{}, notEncrypted("a part without a body")
		}
		raw = append(append(raw, line...), '\r', '\n')
		if len(raw) > maxPartHeader {
			return textproto.Header{}, notEncrypted("a part header over %d octets", maxPartHeader)
		}
		if len(line) == 0 {
			break
		}
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return textproto.Header{}, notEncrypted("part header: %v", err)
	}
	return h, nil
}

// partReader reads a part's body up to the delimiter that ends it. The
// line end before a delimiter belongs to the delimiter.
type partReader struct {
	m       *mimeLines
	pending []byte
	started bool
	done    bool
	end     lineKind
}

func (p *partReader) Read(b []byte) (int, error) {
	for len(p.pending) == 0 {
		if p.done {
			return 0, io.EOF
		}
		line, kind, err := p.m.next()
		if err == io.EOF {
			return 0, notEncrypted("the last part has no closing boundary")
		}
		if err != nil {
			return 0, err
		}
		if kind != lineText {
			p.done, p.end = true, kind
			return 0, io.EOF
		}
		p.pending = p.pending[:0]
		if p.started {
			p.pending = append(p.pending, '\r', '\n')
		}
		p.started = true
		p.pending = append(p.pending, line...)
	}
	n := copy(b, p.pending)
	p.pending = p.pending[n:]
	return n, nil
}

// ended reads what is left of the part (nothing, when whoever read it
// read to its end) and says whether that was nothing.
func (p *partReader) ended() bool {
	n, err := io.Copy(io.Discard, p)
	return err == nil && n == 0 && p.done
}

// verifySMIME checks an application/pkcs7-mime body: what its smime-type
// says, the transfer encoding undone, must be a CMS ContentInfo of that type.
func verifySMIME(body io.Reader, smimeType, cte string) error {
	var want string
	switch strings.ToLower(smimeType) {
	case "enveloped-data":
		want = "enveloped-data"
	case "authenveloped-data":
		want = "authenveloped-data"
	default:
		return notEncrypted("smime-type %q", smimeType)
	}
	dec, err := decodeCTE(body, cte)
	if err != nil {
		return notEncrypted("transfer encoding %q", cte)
	}
	der, err := io.ReadAll(io.LimitReader(dec, maxEncryptedDER+1))
	if err != nil {
		return notEncrypted("the body cannot be decoded: %v", err)
	}
	if len(der) > maxEncryptedDER {
		return notEncrypted("larger than %d MiB", maxEncryptedDER>>20)
	}
	return verifyCMSEnveloped(der, want)
}

// verifyArmoredMessage checks that r holds one armored PGP MESSAGE, with
// blank lines around it at most, whose packets pass the packet test.
func verifyArmoredMessage(r io.Reader) error {
	fr := &armorFrame{br: bufio.NewReaderSize(r, 4<<10)}
	block, err := armor.Decode(fr)
	if err != nil {
		return notEncrypted("armor: %v", err)
	}
	if block.Type != "PGP MESSAGE" {
		return notEncrypted("armored %s", block.Type)
	}
	if err := verifyPacketStream(block.Body); err != nil {
		return err
	}
	// The armor decoder stops at the checksum: the lines after it, and
	// after the end line, are the frame's to check.
	return fr.finish()
}

// verifyPacketStream reads OpenPGP packets: session keys first (one or
// more), then one integrity-protected encrypted-data packet whose contents
// are read through without decrypting them, then the end.
func verifyPacketStream(r io.Reader) error {
	sessionKeys, encrypted := 0, false
	for {
		p, err := packet.Read(r)
		if err == io.EOF {
			break
		}
		if err != nil {
			return notEncrypted("packet: %v", err)
		}
		if encrypted {
			return notEncrypted("a packet after the encrypted data")
		}
		var contents io.Reader
		switch p := p.(type) {
		case *packet.EncryptedKey, *packet.SymmetricKeyEncrypted:
			sessionKeys++
			continue
		case *packet.SymmetricallyEncrypted:
			if !p.IntegrityProtected {
				return notEncrypted("encrypted data without integrity protection (tag 9)")
			}
			contents = p.Contents
		case *packet.AEADEncrypted:
			contents = p.Contents
		default:
			return notEncrypted("a %T packet", p)
		}
		if sessionKeys == 0 {
			return notEncrypted("encrypted data without a session key")
		}
		n, err := io.Copy(io.Discard, contents)
		if err != nil {
			return notEncrypted("encrypted data: %v", err)
		}
		if n == 0 {
			return notEncrypted("empty encrypted data")
		}
		encrypted = true
	}
	if !encrypted {
		return notEncrypted("no encrypted data")
	}
	return nil
}

// armorFrame passes an armored block to the armor decoder line by line,
// refusing anything the decoder would skip or ignore: text before the
// BEGIN line, unknown header lines, blank or non-Base64 lines inside, lines
// between the checksum and the END line, and anything but blank lines after
// it.
type armorFrame struct {
	br      *bufio.Reader
	state   int
	headers int
	pending []byte
}

const (
	frameBefore = iota
	frameHeaders
	frameBody
	frameChecksum
	frameEnded
)

const (
	armorBegin       = "-----BEGIN PGP MESSAGE-----"
	armorEnd         = "-----END PGP MESSAGE-----"
	maxArmorLine     = 96 // what go-crypto's decoder takes
	maxArmorHeaders  = 8
	maxArmorHeaderLn = 200
)

// Armor header keys of RFC 9580 6.2.2; the values travel in clear.
var armorHeaderKeys = map[string]bool{"Version": true, "Comment": true, "Charset": true, "MessageID": true, "Hash": true}

func (f *armorFrame) Read(p []byte) (int, error) {
	for len(f.pending) == 0 {
		if f.state == frameEnded {
			return 0, io.EOF
		}
		line, err := f.line()
		if err != nil {
			return 0, err
		}
		if line == nil {
			continue
		}
		f.pending = append(append(f.pending[:0], line...), '\n')
	}
	n := copy(p, f.pending)
	f.pending = f.pending[n:]
	return n, nil
}

// line reads one line and checks it against the state; nil, nil: a line
// the decoder is not shown (blank lines before the block).
func (f *armorFrame) line() ([]byte, error) {
	raw, err := f.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, notEncrypted("armor: a line is too long")
	}
	if err == io.EOF && len(raw) > 0 {
		err = nil
	}
	if err == io.EOF {
		return nil, notEncrypted("armor: no END line")
	}
	if err != nil {
		return nil, err
	}
	line := bytes.TrimRight(raw, " \t\r\n")
	switch f.state {
	case frameBefore:
		switch {
		case len(line) == 0:
			return nil, nil
		case string(line) == armorBegin:
			f.state = frameHeaders
			return line, nil
		}
		return nil, notEncrypted("text before the armored message")
	case frameHeaders:
		if len(line) == 0 {
			f.state = frameBody
			return line, nil
		}
		k, _, ok := bytes.Cut(line, []byte(": "))
		f.headers++
		if !ok || !armorHeaderKeys[string(k)] || len(line) > maxArmorHeaderLn || f.headers > maxArmorHeaders {
			return nil, notEncrypted("armor header line")
		}
		return line, nil
	case frameBody:
		switch {
		case string(line) == armorEnd:
			f.state = frameEnded
			return line, nil
		case len(line) == 5 && line[0] == '=' && isBase64(line[1:]):
			f.state = frameChecksum
			return line, nil
		case len(line) > 0 && len(line) <= maxArmorLine && isBase64(line):
			return line, nil
		}
		return nil, notEncrypted("armor: a line that is not Base64")
	case frameChecksum:
		if string(line) == armorEnd {
			f.state = frameEnded
			return line, nil
		}
		return nil, notEncrypted("armor: text after the checksum")
	}
	return nil, io.EOF
}

// finish reads what the decoder left: the rest of the block, then blank
// lines only.
func (f *armorFrame) finish() error {
	for f.state != frameEnded {
		if _, err := f.line(); err != nil {
			return err
		}
	}
	for {
		raw, err := f.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return notEncrypted("text after the armored message")
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			return notEncrypted("text after the armored message")
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func isBase64(b []byte) bool {
	pad := false
	for _, c := range b {
		switch {
		case c == '=':
			pad = true
		case pad:
			return false // data after padding
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

// CMS (RFC 5652, RFC 5083) structure, read as BER: S/MIME clients write
// indefinite lengths (NSS, which Thunderbird uses; OpenSSL when streaming),
// which encoding/asn1 and cryptobyte do not read. Only the structure is
// looked at; nothing is decrypted.

type berElement struct {
	class       byte // 0 universal, 2 context-specific
	tag         uint32
	constructed bool
	content     []byte // for a constructed element: its children, end-of-contents left out
}

const (
	berUniversal = 0
	berContext   = 2

	tagInteger     = 2
	tagOctetString = 4
	tagOID         = 6
	tagSequence    = 16
	tagSet         = 17

	maxBERDepth    = 32
	maxBERChildren = 4096
)

var errBER = errors.New("malformed BER")

func (e berElement) is(class byte, tag uint32, constructed bool) bool {
	return e.class == class && e.tag == tag && e.constructed == constructed
}

// readBER reads one element; indefinite lengths are followed to their
// end-of-contents through the nested elements.
func readBER(b []byte, depth int) (berElement, []byte, error) {
	var el berElement
	if depth > maxBERDepth {
		return el, nil, fmt.Errorf("%w: nested more than %d deep", errBER, maxBERDepth)
	}
	if len(b) < 2 {
		return el, nil, fmt.Errorf("%w: truncated", errBER)
	}
	id := b[0]
	b = b[1:]
	el.class, el.constructed, el.tag = id>>6, id&0x20 != 0, uint32(id&0x1f)
	if el.tag == 0x1f {
		el.tag = 0
		for i := 0; ; i++ {
			if len(b) == 0 || i == 4 {
				return el, nil, fmt.Errorf("%w: tag", errBER)
			}
			c := b[0]
			b = b[1:]
			el.tag = el.tag<<7 | uint32(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
	}
	if el.class == berUniversal && el.tag == 0 {
		return el, nil, fmt.Errorf("%w: stray end-of-contents", errBER)
	}
	if len(b) == 0 {
		return el, nil, fmt.Errorf("%w: truncated", errBER)
	}
	l := b[0]
	b = b[1:]
	n := 0
	switch {
	case l < 0x80:
		n = int(l)
	case l == 0x80:
		if !el.constructed {
			return el, nil, fmt.Errorf("%w: indefinite length of a primitive", errBER)
		}
		start := b
		for {
			if len(b) >= 2 && b[0] == 0 && b[1] == 0 {
				el.content = start[:len(start)-len(b)]
				return el, b[2:], nil
			}
			var err error
			if _, b, err = readBER(b, depth+1); err != nil {
				return el, nil, err
			}
		}
	case l == 0xff:
		return el, nil, fmt.Errorf("%w: length", errBER)
	default:
		k := int(l & 0x7f)
		if k > 4 || len(b) < k {
			return el, nil, fmt.Errorf("%w: length", errBER)
		}
		for _, c := range b[:k] {
			n = n<<8 | int(c)
		}
		b = b[k:]
	}
	if n < 0 || n > len(b) {
		return el, nil, fmt.Errorf("%w: length beyond the data", errBER)
	}
	el.content = b[:n]
	return el, b[n:], nil
}

// children reads the elements inside a constructed one.
func (e berElement) children(depth int) ([]berElement, error) {
	if !e.constructed {
		return nil, fmt.Errorf("%w: primitive where constructed expected", errBER)
	}
	var out []berElement
	for b := e.content; len(b) > 0; {
		var el berElement
		var err error
		if el, b, err = readBER(b, depth+1); err != nil {
			return nil, err
		}
		if len(out) == maxBERChildren {
			return nil, fmt.Errorf("%w: too many elements", errBER)
		}
		out = append(out, el)
	}
	return out, nil
}

// octets is the length of an OCTET STRING (or one with an implicit tag),
// which BER may split into constructed pieces.
func (e berElement) octets(depth int) (int, error) {
	if !e.constructed {
		return len(e.content), nil
	}
	kids, err := e.children(depth)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range kids {
		if k.class != berUniversal || k.tag != tagOctetString {
			return 0, fmt.Errorf("%w: a piece of an OCTET STRING is not one", errBER)
		}
		m, err := k.octets(depth + 1)
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}

// octetBytes is the value of an OCTET STRING, its BER pieces joined.
func (e berElement) octetBytes(depth int) ([]byte, error) {
	if !e.constructed {
		return e.content, nil
	}
	kids, err := e.children(depth)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, k := range kids {
		if k.class != berUniversal || k.tag != tagOctetString {
			return nil, fmt.Errorf("%w: a piece of an OCTET STRING is not one", errBER)
		}
		b, err := k.octetBytes(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// smallInt reads an INTEGER of one octet (CMS versions).
func (e berElement) smallInt() (int, bool) {
	if !e.is(berUniversal, tagInteger, false) || len(e.content) != 1 || e.content[0] >= 0x80 {
		return 0, false
	}
	return int(e.content[0]), true
}

func oidContent(oid asn1.ObjectIdentifier) string {
	b, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return string(b[2:]) // tag and one-octet length: every OID here is short
}

var (
	oidEnvelopedData     = oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3})
	oidAuthEnvelopedData = oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23})
	oidSignedData        = oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2})

	// contentCiphers are the content-encryption algorithms S/MIME clients
	// use, with their block size (0: no padding to blocks).
	contentCiphers = map[string]int{
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}):     16, // aes128-CBC
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}):    16, // aes192-CBC
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}):    16, // aes256-CBC
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}):     0,  // aes128-GCM
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 26}):    0,  // aes192-GCM
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}):    0,  // aes256-GCM
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 7}):     0,  // aes128-CCM
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 27}):    0,  // aes192-CCM
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 47}):    0,  // aes256-CCM
		oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 18}): 0,  // ChaCha20-Poly1305
		oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}):            8,  // des-ede3-cbc
		oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 2}):            8,  // rc2-cbc
		oidContent(asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}):                  8,  // des-cbc
		oidContent(asn1.ObjectIdentifier{1, 2, 392, 200011, 61, 1, 1, 1, 2}):  16, // camellia128-cbc
		oidContent(asn1.ObjectIdentifier{1, 2, 392, 200011, 61, 1, 1, 1, 3}):  16, // camellia192-cbc
		oidContent(asn1.ObjectIdentifier{1, 2, 392, 200011, 61, 1, 1, 1, 4}):  16, // camellia256-cbc
	}
)

// verifyCMSEnveloped checks a ContentInfo holding EnvelopedData
// ("enveloped-data") or AuthEnvelopedData ("authenveloped-data"; "" takes
// either), with nothing after it.
func verifyCMSEnveloped(der []byte, want string) error {
	if err := cmsEnveloped(der, want); err != nil {
		return notEncrypted("CMS: %v", err)
	}
	return nil
}

func cmsEnveloped(der []byte, want string) error {
	ci, rest, err := readBER(der, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("data after the ContentInfo")
	}
	if !ci.is(berUniversal, tagSequence, true) {
		return errors.New("not a ContentInfo")
	}
	kids, err := ci.children(0)
	if err != nil {
		return err
	}
	if len(kids) != 2 || !kids[0].is(berUniversal, tagOID, false) || !kids[1].is(berContext, 0, true) {
		return errors.New("not a ContentInfo")
	}
	var auth bool
	switch oid := string(kids[0].content); {
	case oid == oidEnvelopedData && want != "authenveloped-data":
	case oid == oidAuthEnvelopedData && want != "enveloped-data":
		auth = true
	default:
		return fmt.Errorf("content type is not %s", want)
	}
	inner, err := kids[1].children(1)
	if err != nil {
		return err
	}
	if len(inner) != 1 || !inner[0].is(berUniversal, tagSequence, true) {
		return errors.New("content is not one SEQUENCE")
	}
	return envelopedData(inner[0], auth)
}

// envelopedData checks EnvelopedData (RFC 5652 6.1) or AuthEnvelopedData
// (RFC 5083 2.1): they differ after the encrypted content.
func envelopedData(e berElement, auth bool) error {
	f, err := e.children(2)
	if err != nil {
		return err
	}
	at := func(i int) berElement {
		if i < len(f) {
			return f[i]
		}
		return berElement{class: 0xff}
	}
	i := 0
	v, ok := at(i).smallInt()
	if !ok || (auth && v != 0) || (!auth && v != 0 && v != 2 && v != 3 && v != 4) {
		return errors.New("version")
	}
	i++
	if at(i).is(berContext, 0, true) { // originatorInfo
		i++
	}
	if !at(i).is(berUniversal, tagSet, true) {
		return errors.New("no RecipientInfos")
	}
	ris, err := at(i).children(3)
	if err != nil {
		return err
	}
	if len(ris) == 0 {
		return errors.New("no RecipientInfo")
	}
	for _, ri := range ris {
		if err := recipientInfo(ri); err != nil {
			return fmt.Errorf("RecipientInfo: %w", err)
		}
	}
	i++
	if err := encryptedContentInfo(at(i)); err != nil {
		return err
	}
	i++
	if auth {
		if at(i).is(berContext, 1, true) { // authAttrs
			i++
		}
		mac := at(i)
		if mac.class != berUniversal || mac.tag != tagOctetString {
			return errors.New("no MAC")
		}
		if n, err := mac.octets(3); err != nil || n == 0 {
			return errors.New("empty MAC")
		}
		i++
		if at(i).is(berContext, 2, true) { // unauthAttrs
			i++
		}
	} else if at(i).is(berContext, 1, true) { // unprotectedAttrs
		i++
	}
	if i != len(f) {
		return errors.New("fields after the end")
	}
	return nil
}

// recipientInfo checks the choices of RFC 5652 6.2 by their fixed fields.
func recipientInfo(ri berElement) error {
	f, err := ri.children(4)
	if err != nil {
		return err
	}
	octetString := func(e berElement) bool {
		n, err := e.octets(5)
		return e.class == berUniversal && e.tag == tagOctetString && err == nil && n > 0
	}
	seq := func(e berElement) bool { return e.is(berUniversal, tagSequence, true) }
	version := func(want ...int) bool {
		if len(f) == 0 {
			return false
		}
		v, ok := f[0].smallInt()
		for _, w := range want {
			if ok && v == w {
				return true
			}
		}
		return false
	}
	switch {
	case ri.is(berUniversal, tagSequence, true): // KeyTransRecipientInfo
		if len(f) == 4 && version(0, 2) && (seq(f[1]) || f[1].is(berContext, 0, false)) && seq(f[2]) && octetString(f[3]) {
			return nil
		}
	case ri.is(berContext, 1, true): // KeyAgreeRecipientInfo
		ukm := len(f) == 4 || f[2].is(berContext, 1, true)
		if len(f) >= 4 && len(f) <= 5 && ukm && version(3) && f[1].is(berContext, 0, true) && seq(f[len(f)-2]) && seq(f[len(f)-1]) {
			if keys, err := f[len(f)-1].children(5); err == nil && len(keys) > 0 {
				return nil
			}
		}
	case ri.is(berContext, 2, true): // KEKRecipientInfo
		if len(f) == 4 && version(4) && seq(f[1]) && seq(f[2]) && octetString(f[3]) {
			return nil
		}
	case ri.is(berContext, 3, true): // PasswordRecipientInfo
		if len(f) >= 3 && len(f) <= 4 && version(0) && seq(f[len(f)-2]) && octetString(f[len(f)-1]) {
			return nil
		}
	case ri.is(berContext, 4, true): // OtherRecipientInfo
		if len(f) == 2 && f[0].is(berUniversal, tagOID, false) {
			return nil
		}
	}
	return errors.New("not a recipient")
}

// encryptedContentInfo checks that there is encrypted content, under a
// known algorithm, of a length the algorithm can produce.
func encryptedContentInfo(e berElement) error {
	if !e.is(berUniversal, tagSequence, true) {
		return errors.New("no EncryptedContentInfo")
	}
	f, err := e.children(3)
	if err != nil {
		return err
	}
	if len(f) != 3 || !f[0].is(berUniversal, tagOID, false) || !f[1].is(berUniversal, tagSequence, true) {
		return errors.New("EncryptedContentInfo without encrypted content")
	}
	alg, err := f[1].children(4)
	if err != nil || len(alg) == 0 || !alg[0].is(berUniversal, tagOID, false) {
		return errors.New("content-encryption algorithm")
	}
	block, known := contentCiphers[string(alg[0].content)]
	if !known {
		return errors.New("unknown content-encryption algorithm")
	}
	if f[2].class != berContext || f[2].tag != 0 {
		return errors.New("no encrypted content")
	}
	n, err := f[2].octets(4)
	if err != nil {
		return err
	}
	if n == 0 || (block > 0 && (n < block || n%block != 0)) {
		return fmt.Errorf("encrypted content of %d octets", n)
	}
	return nil
}

// cmsSignedContent returns what an opaque-signed S/MIME body carries: the
// encapsulated content of a CMS SignedData (RFC 5652 5.1), a MIME entity
// in clear; false when der is not that.
func cmsSignedContent(der []byte) ([]byte, bool) {
	ci, rest, err := readBER(der, 0)
	if err != nil || len(rest) != 0 || !ci.is(berUniversal, tagSequence, true) {
		return nil, false
	}
	kids, err := ci.children(0)
	if err != nil || len(kids) != 2 || !kids[0].is(berUniversal, tagOID, false) || string(kids[0].content) != oidSignedData ||
		!kids[1].is(berContext, 0, true) {
		return nil, false
	}
	inner, err := kids[1].children(1)
	if err != nil || len(inner) != 1 || !inner[0].is(berUniversal, tagSequence, true) {
		return nil, false
	}
	f, err := inner[0].children(2)
	if err != nil || len(f) < 3 || !f[2].is(berUniversal, tagSequence, true) {
		return nil, false
	}
	eci, err := f[2].children(3)
	if err != nil || len(eci) != 2 || !eci[1].is(berContext, 0, true) {
		return nil, false
	}
	octets, err := eci[1].children(4)
	if err != nil || len(octets) != 1 || octets[0].class != berUniversal || octets[0].tag != tagOctetString {
		return nil, false
	}
	content, err := octets[0].octetBytes(5)
	return content, err == nil
}
