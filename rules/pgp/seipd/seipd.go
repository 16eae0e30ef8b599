// Package seipd writes OpenPGP Symmetrically Encrypted Integrity Protected
// Data packets, version 1 (RFC 9580 5.13.1, RFC 4880 5.13): the encryption
// container every OpenPGP implementation reads, GnuPG 2.2 included.
//
// go-crypto writes the same packet, but its OpenPGP CFB runs a byte at a
// time (about 130 MB/s here): with large attachments it was the biggest
// single cost of an encrypted message and of every archive record. This
// writer does the same CFB a run of whole blocks at a time (in assembly
// where the CPU has AES-NI and AVX, with the SHA-1 of the integrity check
// in the same loop where it also has SHA-NI), four times as fast with that
// SHA-1 (BenchmarkSEIPD). What goes inside (literal data, signatures) and
// the session-key packets are still go-crypto's. The pooled chunk buffers
// only ever hold ciphertext.
package seipd

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

const (
	tagSEIPD = 18
	tagMDC   = 19
	// Partial body chunks of 64 KiB (a partial length is a power of two,
	// the first at least 512 octets).
	chunkBits = 16
	chunkSize = 1 << chunkBits
)

// NewWriter starts a SEIPDv1 packet on w, encrypted with key under c, and
// returns the writer for its plaintext (the packets inside). Close writes
// the integrity check and ends the packet; it does not close w.
func NewWriter(w io.Writer, c packet.CipherFunction, key []byte) (io.WriteCloser, error) {
	s, err := newWriter(w, c, key, rand.Reader, haveFusedAsm)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// newWriter is NewWriter with the prefix's randomness and the choice of the
// fused CFB and SHA-1 loop (cfb_amd64.s) given, for the tests.
func newWriter(w io.Writer, c packet.CipherFunction, key []byte, random io.Reader, fuse bool) (*writer, error) {
	switch c {
	case packet.CipherAES128, packet.CipherAES192, packet.CipherAES256:
	default:
		return nil, fmt.Errorf("seipd: cipher %d: only AES is written", c)
	}
	if len(key) != c.KeySize() {
		return nil, errors.New("seipd: key length does not match the cipher")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	bs := block.BlockSize()
	s := &writer{
		w:   w,
		cfb: cfb{b: block, reg: make([]byte, bs), ks: make([]byte, bs), used: bs},
		mdc: sha1.New(),
		buf: chunks.Get().(*[chunkSize]byte)[:1],
	}
	if haveCFBAsm {
		s.cfb.xk, s.cfb.rounds = expandKey(key)
		s.fuse = fuse && (s.cfb.rounds == 10 || s.cfb.rounds == 14)
	}
	s.buf[0] = 1 // version
	// The prefix: a block of random octets and its last two again, which
	// lets a reader tell a wrong key early. It counts in the integrity check.
	prefix := make([]byte, bs+2)
	if _, err := io.ReadFull(random, prefix[:bs]); err != nil {
		return nil, err
	}
	copy(prefix[bs:], prefix[bs-2:bs])
	if _, err := s.Write(prefix); err != nil {
		return nil, err
	}
	return s, nil
}

// chunks recycles the chunk buffers: every message and archive record has one.
var chunks = sync.Pool{New: func() any { return new([chunkSize]byte) }}

type writer struct {
	w      io.Writer
	cfb    cfb
	mdc    hash.Hash
	buf    []byte // ciphertext of the current chunk (the first starts with the version octet)
	header bool   // the packet's tag has been written (a partial chunk went out)
	err    error
	closed bool

	n        int64 // octets encrypted so far (prefix and plaintext)
	fuse     bool  // 64-octet runs go through cfbSHA1AVX
	mdcState []byte
}

func (s *writer) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.closed {
		return 0, errors.New("seipd: write after close")
	}
	s.seal(p, true)
	return len(p), s.err
}

// seal appends the ciphertext of p to the chunk, writing out full chunks;
// with check, p also goes into the modification detection code. Where it
// can, a run of whole 64-octet blocks does both in one pass (fused).
func (s *writer) seal(p []byte, check bool) {
	for len(p) > 0 && s.err == nil {
		if len(s.buf) == chunkSize {
			s.flushPartial()
			continue
		}
		m := min(len(p), chunkSize-len(s.buf))
		off := len(s.buf)
		if check && s.fuse && s.n%64 == 0 && m >= 64 {
			m &^= 63
			s.buf = s.buf[:off+m]
			if s.fused(s.buf[off:], p[:m]) {
				p = p[m:]
				s.n += int64(m)
				continue
			}
		}
		if check && s.fuse {
			// Apart, only up to the next 64-octet boundary.
			m = min(m, 64-int(s.n%64))
		}
		s.buf = s.buf[:off+m]
		if check {
			s.mdc.Write(p[:m])
		}
		s.cfb.xor(s.buf[off:], p[:m])
		p = p[m:]
		s.n += int64(m)
	}
}

// flushPartial writes the full chunk in buf as a partial body: only when
// more follows, so the last length is always a definite one.
func (s *writer) flushPartial() {
	var hdr []byte
	if !s.header {
		hdr = append(hdr, 0xc0|tagSEIPD)
		s.header = true
	}
	hdr = append(hdr, 224+chunkBits)
	if _, err := s.w.Write(hdr); err != nil {
		s.err = err
		return
	}
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = err
		return
	}
	s.buf = s.buf[:0]
}

// Close encrypts the modification detection code (a SHA-1 over the prefix,
// the plaintext and the MDC packet's own two header octets) and writes the
// last chunk with a definite length.
func (s *writer) Close() error {
	if s.closed {
		return s.err
	}
	s.closed = true
	if s.err != nil {
		return s.err
	}
	s.seal([]byte{0xc0 | tagMDC, sha1.Size}, true)
	if s.seal(s.mdc.Sum(nil), false); s.err != nil {
		return s.err
	}
	var hdr []byte
	if !s.header {
		hdr = append(hdr, 0xc0|tagSEIPD)
	}
	hdr = appendLength(hdr, len(s.buf))
	if _, err := s.w.Write(hdr); err != nil {
		s.err = err
		return err
	}
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = err
	}
	chunks.Put((*[chunkSize]byte)(s.buf[:chunkSize]))
	s.buf = nil
	clear(s.cfb.xk) // the expanded session key need not outlive the packet
	return s.err
}

// appendLength appends a new-format definite body length (RFC 9580 4.2.1).
func appendLength(b []byte, n int) []byte {
	switch {
	case n < 192:
		return append(b, byte(n))
	case n < 8384:
		n -= 192
		return append(b, byte(n>>8)+192, byte(n))
	}
	return append(b, 0xff, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// cfb is OpenPGP's CFB without the resynchronisation step, which is plain
// CFB with an all-zero IV over prefix and data (RFC 9580 5.13.1 and
// RFC 4880 13.9): each keystream block is the encryption of the previous
// ciphertext block.
type cfb struct {
	b    cipher.Block
	cbc  cipher.BlockMode // see xor; nil until the first run of whole blocks
	reg  []byte           // the ciphertext block being made (complete when used == len)
	ks   []byte           // the keystream block for reg
	used int

	xk     []byte // round keys for blocksAsm; nil: no assembly here
	rounds int
}

// xor encrypts src into dst, which must not overlap.
func (c *cfb) xor(dst, src []byte) {
	bs := len(c.reg)
	for len(src) > 0 {
		if c.used == bs {
			if n := len(src) &^ (bs - 1); n >= 2*bs {
				c.blocks(dst[:n], src[:n])
				dst, src = dst[n:], src[n:]
				continue
			}
			c.b.Encrypt(c.ks, c.reg)
			c.used = 0
		}
		n := subtle.XORBytes(dst, src, c.ks[c.used:])
		copy(c.reg[c.used:], dst[:n])
		c.used += n
		dst, src = dst[n:], src[n:]
	}
}

// blocks encrypts whole blocks. Keystream block i+1 is E(C_i) = E(P_i XOR
// K_i): the keystream after the first block is the CBC encryption of the
// plaintext with K_1 as its IV. CBC runs its loop inside the standard
// library, without the per-call checks of Block.Encrypt, and the XOR with
// the plaintext is then one vectorised pass: half again as fast as a block
// at a time (BenchmarkSEIPD). blocksAsm, where there is one, is faster still.
func (c *cfb) blocks(dst, src []byte) {
	if c.blocksAsm(dst, src) {
		return
	}
	bs := len(c.reg)
	n := len(src)
	c.b.Encrypt(dst[:bs], c.reg)
	if iv, ok := c.cbc.(interface{ SetIV([]byte) }); ok {
		iv.SetIV(dst[:bs])
	} else {
		c.cbc = cipher.NewCBCEncrypter(c.b, dst[:bs])
	}
	c.cbc.CryptBlocks(dst[bs:n], src[:n-bs])
	subtle.XORBytes(dst, src, dst)
	copy(c.reg, dst[n-bs:])
}
