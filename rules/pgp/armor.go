package pgp

import (
	"encoding/binary"
	"io"

	"github.com/segmentio/asm/base64"
)

// armorWriter writes an ASCII-armored "PGP MESSAGE" (RFC 4880 section 6)
// with CRLF line ends, as a MIME body wants. go-crypto's armor computes the
// CRC-24 checksum a bit at a time, which halves the speed of a large
// message; leaving the checksum out is what RFC 9580 allows, but GnuPG 2.2
// (Debian 12) then fails to read the armor. So: a CRC-24 sixteen octets at
// a time here, and many lines encoded per write. The Base64 of whole lines
// is made in one call with AVX2 (segmentio/asm) and then cut into lines.
// BenchmarkArmor: 410 MB/s with encoding/base64 a line at a time and the
// CRC-24 eight octets at a time, 1.1 GB/s now.
//
// Lines are 76 characters, the most RFC 4880 and 9580 (section 6) allow and
// what MIME's Base64 uses, rather than GnuPG's 64: every program that
// handles the copy on its way (the provider's server, spam filters, the
// client) pays per line, and 64-character lines made the benchmark's
// receiving server (smtp-sink) work a sixth more for each message.
type armorWriter struct {
	w   io.Writer
	crc uint32
	in  [lineIn]byte // a line's input not yet complete
	n   int
	enc [linesOut * lineB64]byte // whole lines' Base64, before the line breaks
	out [linesOut * lineOut]byte
	m   int
	err error
}

const (
	lineIn   = 57 // octets per armor line
	lineB64  = 76 // lineIn in Base64
	lineOut  = lineB64 + 2
	linesOut = 64
)

// crc24Tables are the slicing-by-16 tables for OpenPGP's CRC-24 (RFC 4880
// 6.1), kept in the top 24 bits of a uint32 so the usual MSB-first CRC-32
// steps apply: crc24Tables[k][i] is octet i followed by k zero octets.
var crc24Tables = func() (t [16][256]uint32) {
	const poly = 0x864cfb00 // x^24 + ..., without the x^24, shifted up 8
	for i := range 256 {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ poly
			} else {
				c <<= 1
			}
		}
		t[0][i] = c
	}
	for i := range 256 {
		for k := 1; k < 16; k++ {
			c := t[k-1][i]
			t[k][i] = c<<8 ^ t[0][c>>24]
		}
	}
	return t
}()

func crc24Update(crc uint32, p []byte) uint32 {
	t := &crc24Tables
	c := crc << 8
	for len(p) >= 16 {
		c ^= binary.BigEndian.Uint32(p)
		c = t[15][c>>24] ^ t[14][c>>16&0xff] ^ t[13][c>>8&0xff] ^ t[12][c&0xff] ^
			t[11][p[4]] ^ t[10][p[5]] ^ t[9][p[6]] ^ t[8][p[7]] ^
			t[7][p[8]] ^ t[6][p[9]] ^ t[5][p[10]] ^ t[4][p[11]] ^
			t[3][p[12]] ^ t[2][p[13]] ^ t[1][p[14]] ^ t[0][p[15]]
		p = p[16:]
	}
	for _, b := range p {
		c = c<<8 ^ t[0][byte(c>>24)^b]
	}
	return c >> 8
}

const crc24Init = 0xb704ce

func newArmorWriter(w io.Writer) (*armorWriter, error) {
	a := &armorWriter{w: w, crc: crc24Init}
	_, err := io.WriteString(w, "-----BEGIN PGP MESSAGE-----\r\n\r\n")
	return a, err
}

func (a *armorWriter) Write(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	a.crc = crc24Update(a.crc, p)
	n := len(p)
	if a.n > 0 {
		c := copy(a.in[a.n:], p)
		a.n += c
		p = p[c:]
		if a.n < lineIn {
			return n, nil
		}
		a.line(a.in[:])
		a.n = 0
	}
	for len(p) >= lineIn && a.err == nil {
		k := min(len(p)/lineIn, linesOut-a.m/lineOut)
		if k == 0 {
			a.flush()
			continue
		}
		a.lines(p[:k*lineIn])
		p = p[k*lineIn:]
	}
	a.n = copy(a.in[:], p)
	return n, a.err
}

// lines encodes whole lines into the output buffer, which has room for them.
func (a *armorWriter) lines(in []byte) {
	base64.StdEncoding.Encode(a.enc[:], in)
	for enc := a.enc[:len(in)/lineIn*lineB64]; len(enc) > 0; enc = enc[lineB64:] {
		copy(a.out[a.m:], enc[:lineB64])
		a.out[a.m+lineB64], a.out[a.m+lineB64+1] = '\r', '\n'
		a.m += lineOut
	}
}

// line encodes one line, perhaps short (the last), writing the buffer out
// when it is full.
func (a *armorWriter) line(in []byte) {
	if a.m+lineOut > len(a.out) {
		a.flush()
	}
	m := base64.StdEncoding.EncodedLen(len(in))
	base64.StdEncoding.Encode(a.out[a.m:], in)
	a.out[a.m+m], a.out[a.m+m+1] = '\r', '\n'
	a.m += m + 2
}

func (a *armorWriter) flush() {
	if a.m > 0 && a.err == nil {
		_, a.err = a.w.Write(a.out[:a.m])
	}
	a.m = 0
}

func (a *armorWriter) Close() error {
	if a.n > 0 {
		a.line(a.in[:a.n])
		a.n = 0
	}
	a.flush()
	if a.err != nil {
		return a.err
	}
	sum := []byte{byte(a.crc >> 16), byte(a.crc >> 8), byte(a.crc)}
	_, err := io.WriteString(a.w, "="+base64.StdEncoding.EncodeToString(sum)+"\r\n-----END PGP MESSAGE-----\r\n")
	return err
}
