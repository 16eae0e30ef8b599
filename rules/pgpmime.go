package rules

import (
	"bufio"
	"bytes"
	"io"
	"strings"

	"github.com/emersion/go-message/textproto"
)

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
	if err := mp.preamble(); err != nil {
		return err
	}
	if err := mp.versionPart(); err != nil {
		return err
	}
	if err := mp.encryptedPart(); err != nil {
		return err
	}
	return mp.epilogue()
}

// preamble reads up to the first delimiter: blank lines and the
// explanations of knownPreambles only.
func (m *mimeLines) preamble() error {
	for {
		line, kind, err := m.next()
		if err != nil {
			return err
		}
		if kind == lineDelimiter {
			return nil
		}
		if kind == lineClose {
			return notEncrypted("no parts")
		}
		if t := strings.TrimSpace(string(line)); t != "" && !knownPreambles[t] {
			return notEncrypted("text in the preamble")
		}
	}
}

// versionPart reads the first part: application/pgp-encrypted holding
// "Version: 1", followed by another part.
func (m *mimeLines) versionPart() error {
	h, err := m.partHeader()
	if err != nil {
		return err
	}
	if mt, _ := contentType(h); mt != "application/pgp-encrypted" || !onlyContentFields(h) {
		return notEncrypted("first part is %s", mt)
	}
	body := &partReader{m: m}
	version, err := io.ReadAll(io.LimitReader(body, 256))
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(version)) != "Version: 1" || !body.ended() || body.end != lineDelimiter {
		return notEncrypted("first part is not Version: 1, or the only part")
	}
	return nil
}

// encryptedPart reads the second and last part: application/octet-stream
// holding one armored PGP MESSAGE.
func (m *mimeLines) encryptedPart() error {
	h, err := m.partHeader()
	if err != nil {
		return err
	}
	if mt, _ := contentType(h); mt != "application/octet-stream" || !onlyContentFields(h) {
		return notEncrypted("second part is %s", mt)
	}
	body := &partReader{m: m}
	dec, err := decodeCTE(body, transferEncoding(h))
	if err != nil {
		return notEncrypted("transfer encoding")
	}
	if err := verifyArmoredMessage(dec); err != nil {
		return err
	}
	if !body.ended() || body.end != lineClose {
		return notEncrypted("more than two parts")
	}
	return nil
}

// epilogue reads what follows the closing delimiter: blank lines only.
func (m *mimeLines) epilogue() error {
	for {
		line, kind, err := m.next()
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

// lineKind is what a line of a multipart body is to its boundary.
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

// partHeader reads a part's header, up to the blank line that ends it.
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
