package pgp

import (
	"encoding/base64"
	"io"
)

// armorWriter writes an ASCII-armored "PGP MESSAGE" (RFC 4880 section 6)
// with CRLF line ends, as a MIME body wants. go-crypto's armor computes the
// CRC-24 checksum a bit at a time, which halves the speed of a large
// message; leaving the checksum out is what RFC 9580 allows, but GnuPG 2.2
// (Debian 12) then fails to read the armor. So: a table-driven CRC-24 here.
type armorWriter struct {
	w    io.Writer
	crc  uint32
	in   [48]byte // 48 bytes make one 64-character line
	n    int
	line [64 + 2]byte
	err  error
}

var crc24Table = func() (t [256]uint32) {
	const poly = 0x1864cfb
	for i := range t {
		c := uint32(i) << 16
		for j := 0; j < 8; j++ {
			c <<= 1
			if c&0x1000000 != 0 {
				c ^= poly
			}
		}
		t[i] = c & 0xffffff
	}
	return t
}()

func newArmorWriter(w io.Writer) (*armorWriter, error) {
	a := &armorWriter{w: w, crc: 0xb704ce}
	_, err := io.WriteString(w, "-----BEGIN PGP MESSAGE-----\r\n\r\n")
	return a, err
}

func (a *armorWriter) Write(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	crc := a.crc
	for _, b := range p {
		crc = (crc << 8) ^ crc24Table[byte(crc>>16)^b]
	}
	a.crc = crc & 0xffffff
	n := len(p)
	for len(p) > 0 {
		c := copy(a.in[a.n:], p)
		a.n += c
		p = p[c:]
		if a.n == len(a.in) {
			a.flushLine()
		}
	}
	return n, a.err
}

func (a *armorWriter) flushLine() {
	m := base64.StdEncoding.EncodedLen(a.n)
	base64.StdEncoding.Encode(a.line[:m], a.in[:a.n])
	a.line[m], a.line[m+1] = '\r', '\n'
	if _, err := a.w.Write(a.line[:m+2]); err != nil && a.err == nil {
		a.err = err
	}
	a.n = 0
}

func (a *armorWriter) Close() error {
	if a.n > 0 {
		a.flushLine()
	}
	if a.err != nil {
		return a.err
	}
	sum := []byte{byte(a.crc >> 16), byte(a.crc >> 8), byte(a.crc)}
	_, err := io.WriteString(a.w, "="+base64.StdEncoding.EncodeToString(sum)+"\r\n-----END PGP MESSAGE-----\r\n")
	return err
}
