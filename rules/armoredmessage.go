package rules

import (
	"bufio"
	"bytes"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// verifyArmoredMessage checks that r holds one armored PGP MESSAGE, with
// blank lines around it at most, whose packets pass the packet test
// (encrypted.go).
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
