package submission

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/bufpool"
	"github.com/sealpost/sealpost/internal/textutil"
)

const (
	maxLineOctets = 998 // RFC 5322 2.1.1, without the CRLF: header lines
	// maxBodyLineOctets bounds body lines: longer than 998 they are
	// re-encoded by the rules (quoted-printable or base64), not refused.
	maxBodyLineOctets = 1 << 20
	maxHeaderBytes    = 100 << 10
	maxHeaderLines    = 1000
)

// strictReader passes the DATA stream through and fails at the first bare
// LF, bare CR or NUL: go-smtp only ends DATA at CRLF.CRLF and hands anything
// else on, and a provider that ends DATA at LF.LF would see a second,
// smuggled message. It also enforces RFC 5322's line length.
type strictReader struct {
	r       io.Reader
	prevCR  bool
	lineLen int
	inBody  bool // past the empty line that ends the header section
	err     error
}

func (s *strictReader) limit() (int, *reply) {
	if s.inBody {
		return maxBodyLineOctets, replyLongBodyLine
	}
	return maxLineOctets, replyLongLine
}

// lineEnded notes a complete line of n octets: an empty one ends the header.
func (s *strictReader) lineEnded(n int) {
	if n == 0 {
		s.inBody = true
	}
	s.lineLen = 0
}

func (s *strictReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	if i, cerr := s.check(p[:n]); cerr != nil {
		s.err = cerr
		return i, cerr
	}
	if err == io.EOF && s.prevCR {
		s.err = replyBareCR
		return n, s.err
	}
	if err != nil && err != io.EOF {
		// Too big, too long a line, the client went away: remembered so the
		// reply says so whatever the reader's caller made of it.
		s.err = err
	}
	return n, err
}

// check looks at p line by line with IndexByte (vectorised) instead of byte
// by byte: a well-formed line has one CR, right before its LF, and no NUL.
// It returns how many bytes are good and the first problem.
func (s *strictReader) check(p []byte) (int, error) {
	i := 0
	for i < len(p) {
		if s.prevCR {
			if p[i] != '\n' {
				return i, replyBareCR
			}
			s.prevCR = false
			s.lineEnded(s.lineLen)
			i++
			continue
		}
		max, errLong := s.limit()
		rest := p[i:]
		end := bytes.IndexByte(rest, '\n')
		seg := rest
		if end >= 0 {
			seg = rest[:end]
		}
		crAtEnd := len(seg) > 0 && seg[len(seg)-1] == '\r'
		content := seg
		if crAtEnd {
			content = seg[:len(seg)-1]
		}
		// The first bad byte in the line, as a byte-by-byte reader would
		// meet it: a CR not before the LF, or a NUL.
		k, bad := bytes.IndexByte(content, '\r'), replyBareCR
		if z := bytes.IndexByte(content, 0); z >= 0 && (k < 0 || z < k) {
			k, bad = z, replyNUL
		}
		if k >= 0 {
			if s.lineLen+k > max {
				return i + max - s.lineLen, errLong
			}
			return i + k, bad
		}
		if s.lineLen+len(content) > max {
			return i + max - s.lineLen, errLong
		}
		if end < 0 {
			s.lineLen += len(content)
			s.prevCR = crAtEnd
			return len(p), nil
		}
		if !crAtEnd {
			return i + end, replyBareLF
		}
		s.lineEnded(s.lineLen + len(content))
		i += end + 1
	}
	return len(p), nil
}

// readHeaderSection reads the raw header section (up to and including the
// empty line) within the size and field limits.
func readHeaderSection(br *bufio.Reader) ([]byte, error) {
	var raw bytes.Buffer
	fields := 0
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Only possible past maxLineOctets, which strictReader refuses first.
			return nil, replyLongLine
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		if len(line) > 0 && line[0] != ' ' && line[0] != '\t' && !isBlankLine(line) {
			fields++
		}
		raw.Write(line)
		if raw.Len() > maxHeaderBytes || fields > maxHeaderLines {
			return nil, replyHeaderTooBig
		}
		if isBlankLine(line) || err == io.EOF {
			return raw.Bytes(), nil
		}
	}
}

func isBlankLine(l []byte) bool { return len(l) == 2 && l[0] == '\r' && l[1] == '\n' }

// Message is a submitted message as the relay takes it in: its header
// section, checked against the account and completed (prepareHeader), then
// its body as the client sends it, every line checked as it is read
// (strictReader). Close it when done.
type Message struct {
	head   bytes.Reader
	strict *strictReader
	br     *bufio.Reader
	rest   io.Reader
}

// ReadMessage reads msg's header section and checks it: the header checks
// of submission (RFC 6409) and sealpost's own, refused with the reply the
// client gets. hostname and id go into the fields a submission server adds;
// autoReplied marks a message sealpost wrote itself (RFC 3834), which
// nothing a client submits may claim.
func ReadMessage(msg io.Reader, acct *Account, hostname, id string, now time.Time, autoReplied bool) (*Message, error) {
	m := &Message{strict: &strictReader{r: msg}}
	m.br = bufpool.Reader(m.strict)
	raw, err := readHeaderSection(m.br)
	if err != nil {
		m.Close()
		return nil, err
	}
	hdr, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		m.Close()
		return nil, replyHeaderUnreadable
	}
	if hdr, err = prepareHeader(hdr, acct, hostname, id, now); err != nil {
		m.Close()
		return nil, err
	}
	if autoReplied {
		hdr.Set("Auto-Submitted", "auto-replied")
	}
	var head bytes.Buffer
	if err := textproto.WriteHeader(&head, hdr); err != nil {
		m.Close()
		return nil, err
	}
	m.head.Reset(head.Bytes())
	m.rest = io.MultiReader(&m.head, m.br)
	return m, nil
}

// Read reads the message: the header section as it is to be sent, then the
// body.
func (m *Message) Read(p []byte) (int, error) { return m.rest.Read(p) }

// InputError is what is wrong with the client's input so far, nil if
// nothing: it is answered as such, whatever the message's reader made of
// it.
func (m *Message) InputError() error { return m.strict.err }

// ReadRest reads what the message's reader left unread: the rest of DATA
// must be clean too.
func (m *Message) ReadRest() error {
	if _, err := io.Copy(io.Discard, m.br); err != nil || m.strict.err != nil {
		return errors.Join(m.strict.err, err)
	}
	return nil
}

// Close gives back the message's buffer.
func (m *Message) Close() {
	if m.br != nil {
		bufpool.PutReader(m.br)
		m.br = nil
	}
}

// privateHeaders are set only by sealpost; a client's copies are dropped so
// nobody can forge a decision or make a therapist's mail look automatic.
func isPrivateHeader(key string) bool {
	k := strings.ToLower(key)
	return strings.HasPrefix(k, "x-sealpost-") || k == "auto-submitted"
}

// prepareHeader checks the submitted header against the account and adds
// what a submission server adds (RFC 6409 section 8): Message-ID and Date
// when missing, and our trace field. It returns the header to spool.
func prepareHeader(h textproto.Header, acct *Account, hostname, id string, now time.Time) (textproto.Header, error) {
	// RFC 5322 section 3.6 allows these once: a second From would go
	// unchecked, a second To or Cc be taken for Bcc, a second Subject
	// escape the content rules.
	for _, k := range []string{"From", "Sender", "To", "Cc", "Subject"} {
		if len(h.Values(k)) > 1 {
			return h, replyFieldTwice.with(k)
		}
	}
	mh := mail.Header{Header: message.Header{Header: h}}
	from, err := mh.AddressList("From")
	if err != nil || len(from) == 0 {
		if h.Has("From") {
			return h, replyFromUnreadable
		}
		return h, replyNoFrom
	}
	for _, a := range from {
		if err := checkOwned(acct, a.Address, "From: header"); err != nil {
			return h, err
		}
	}
	for _, o := range otherOriginators {
		for _, v := range h.Values(o.key) {
			list, err := mail.ParseAddressList(v)
			if err != nil || len(list) == 0 || o.single && len(list) != 1 {
				return h, replyFieldUnreadable.with(o.key)
			}
			for _, a := range list {
				if err := checkOwned(acct, a.Address, o.key+": header"); err != nil {
					return h, err
				}
			}
		}
	}
	for f := h.Fields(); f.Next(); {
		if isPrivateHeader(f.Key()) {
			f.Del()
		}
	}
	if !h.Has("Message-Id") {
		h.Set("Message-Id", "<"+id+"."+randomToken()+"@"+hostname+">")
	}
	if !h.Has("Date") {
		h.Set("Date", now.Format(time.RFC1123Z))
	}
	// No client IP: it would tell every client where their therapist works from.
	h.Add("Received", fmt.Sprintf("by %s (sealpost) with ESMTPSA id %s; %s", hostname, id, now.Format(time.RFC1123Z)))
	return h, nil
}

// otherOriginators are the fields besides From that say who wrote or sent
// a message, and so are bound to the account like From: Sender (RFC 5322
// 3.6.2), Resent-From and Resent-Sender in every block of resent fields
// (3.6.6: a message resent earlier by someone else carries their block too,
// and a forged one could be put below a true one), and Author (RFC 9057).
// Reply-To, Mail-Followup-To, Mail-Reply-To and Disposition-Notification-To
// only say where answers go, which may be anyone (a colleague, the
// practice's shared mailbox); they claim no identity and are left alone.
var otherOriginators = []struct {
	key    string
	single bool // one mailbox (RFC 5322's sender), not a list
}{
	{"Sender", true},
	{"Resent-From", false},
	{"Resent-Sender", true},
	{"Author", false},
}

func checkOwned(acct *Account, address, where string) error {
	n, err := addr.Strict(address)
	var np *addr.NotPlainError
	if errors.As(err, &np) {
		return notPlainReply(replyFieldNotPlain, " in the "+where, np)
	}
	if err != nil || !acct.Owns(n) {
		return replyFieldNotAccounts.with(textutil.OneLine(address), where, acct.Username)
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
