package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // subjects in any charset
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// encrypt seals v (and body, when given) to the archive key: the relay can
// write records it cannot read back.
func (a *Archive) encrypt(meta any, body io.Reader) (*payload, *bodyInfo, error) {
	out := &payload{dir: a.dir, h: sha256.New()}
	if sized, ok := body.(interface{ Size() int64 }); ok {
		// The record is the message plus a few percent (packet headers,
		// the metadata): sized for it, the payload is not grown a
		// doubling at a time, and a large one goes to its file at once.
		if want := sized.Size() + sized.Size()/32 + 8<<10; want <= payloadInMemory {
			out.mem = make([]byte, 0, want)
		} else {
			out.toFile = true
		}
	}
	rk, err := a.recordKey()
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*payload, *bodyInfo, error) {
		out.close()
		return nil, nil, err
	}
	out.Write(rk.pkesk)
	// SEIPDv1, not AEAD: what every OpenPGP implementation reads, GnuPG 2.2
	// included.
	sealed, err := packet.SerializeSymmetricallyEncrypted(out, rk.ciph, false, packet.CipherSuite{}, rk.key, nil)
	if err != nil {
		return fail(fmt.Errorf("archive: encrypt: %w", err))
	}
	w, err := packet.SerializeLiteral(sealed, true, "", 0)
	if err != nil {
		return fail(fmt.Errorf("archive: encrypt: %w", err))
	}
	var info *bodyInfo
	if body != nil {
		info = &bodyInfo{}
		head := &capped{max: 256 << 10}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(chunked{w}, head, h), body)
		if err != nil {
			return fail(fmt.Errorf("archive: read message: %w", err))
		}
		info.size, info.sha256 = n, hex.EncodeToString(h.Sum(nil))
		info.parseHeader(head.Bytes())
	}
	if mm, ok := meta.(*messageMeta); ok && info != nil {
		mm.Subject, mm.From, mm.MessageID, mm.Size, mm.SHA256 = info.subject, info.from, info.messageID, info.size, info.sha256
		if late, ok := body.(DecisionsAtEnd); ok {
			mm.Decisions = late.DecisionsAtEnd()
		}
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return fail(err)
	}
	// The metadata follows the body, with its length last: the body is
	// streamed in before anything about it is known.
	w.Write(mb)
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(mb)))
	w.Write(l[:])
	if err := w.Close(); err != nil {
		return fail(fmt.Errorf("archive: encrypt: %w", err))
	}
	if out.err != nil {
		return fail(out.err)
	}
	return out, info, nil
}

// payload is an encrypted payload on its way to the writer: in memory
// while small, in a temporary file once large, so a 50 MB message is never
// held in memory.
type payload struct {
	dir    string
	mem    []byte
	toFile bool // known to be too large for memory: straight to the file
	file   *os.File
	n      int64
	h      hash.Hash
	err    error
}

const payloadInMemory = 2 << 20

func (p *payload) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	p.h.Write(b)
	p.n += int64(len(b))
	if p.file == nil && !p.toFile && len(p.mem)+len(b) <= payloadInMemory {
		p.mem = append(p.mem, b...)
		return len(b), nil
	}
	if p.file == nil {
		tmp := filepath.Join(p.dir, "tmp")
		os.MkdirAll(tmp, 0o700)
		f, err := os.CreateTemp(tmp, "payload-*")
		if err != nil {
			p.err = fmt.Errorf("archive: %w", err)
			return 0, p.err
		}
		os.Remove(f.Name()) // gone with the last close, even after a crash
		if _, err := f.Write(p.mem); err != nil {
			f.Close()
			p.err = fmt.Errorf("archive: %w", err)
			return 0, p.err
		}
		p.file, p.mem = f, nil
	}
	if _, err := p.file.Write(b); err != nil {
		p.err = fmt.Errorf("archive: %w", err)
		return 0, p.err
	}
	return len(b), nil
}

func (p *payload) len() int64 {
	if p == nil {
		return 0
	}
	return p.n
}

func (p *payload) sha() string {
	if p == nil || p.n == 0 {
		return ""
	}
	return hex.EncodeToString(p.h.Sum(nil))
}

func (p *payload) writeTo(w io.Writer) error {
	if p == nil {
		return nil
	}
	if p.file == nil {
		_, err := w.Write(p.mem)
		return err
	}
	if _, err := p.file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	n, err := io.Copy(w, p.file)
	if err == nil && n != p.n {
		err = fmt.Errorf("payload file holds %d bytes, want %d", n, p.n)
	}
	return err
}

func (p *payload) close() {
	if p != nil && p.file != nil {
		p.file.Close()
	}
}

type bodyInfo struct {
	size                     int64
	sha256                   string
	subject, from, messageID string
}

func (b *bodyInfo) parseHeader(raw []byte) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return
	}
	mh := mail.Header{Header: message.Header{Header: h}}
	b.subject, _ = mh.Subject()
	b.messageID, _ = mh.MessageID()
	b.from = h.Get("From")
}

// capped keeps the first max bytes written to it.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// chunked hands w at most chunkSize octets per write: go-crypto's packet
// writers keep each write whole in a buffer, and its CFB allocates a copy
// of each, so a body written in one piece (a bytes.Reader's) would be in
// memory three times.
type chunked struct{ w io.Writer }

const chunkSize = 64 << 10

func (c chunked) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), chunkSize)
		m, err := c.w.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}
