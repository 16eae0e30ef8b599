//go:build !purego

package seipd

import (
	"encoding"
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/cpu"
)

// The standard library keeps its AES round keys to itself and runs CFB (or
// CBC, see cfb.blocks) a Go call per block: half of that time was the
// calls. With AES-NI and AVX the whole-block loop runs in assembly instead
// (cfb_amd64.s); CPUs without them (some Atoms) keep the portable path.
var haveCFBAsm = cpu.X86.HasAES && cpu.X86.HasAVX

//go:noescape
func cfbEncryptAVX(xk *byte, rounds int, reg *byte, dst, src *byte, blocks int)

func subWord(w uint32) uint32

// expandKey is the AES key schedule (FIPS 197 5.2): the round keys as the
// octets AESENC takes, and the number of rounds.
func expandKey(key []byte) ([]byte, int) {
	nk := len(key) / 4
	rounds := nk + 6
	w := make([]uint32, 4*(rounds+1))
	for i := range nk {
		w[i] = binary.BigEndian.Uint32(key[4*i:])
	}
	rcon := uint32(1)
	for i := nk; i < len(w); i++ {
		t := w[i-1]
		switch {
		case i%nk == 0:
			t = subWord(t<<8|t>>24) ^ rcon<<24
			rcon <<= 1
			if rcon&0x100 != 0 {
				rcon ^= 0x11b
			}
		case nk > 6 && i%nk == 4:
			t = subWord(t)
		}
		w[i] = w[i-nk] ^ t
	}
	xk := make([]byte, 4*len(w))
	for i, v := range w {
		binary.BigEndian.PutUint32(xk[4*i:], v)
	}
	return xk, rounds
}

// blocksAsm encrypts whole blocks in assembly, if it can.
func (c *cfb) blocksAsm(dst, src []byte) bool {
	if c.xk == nil {
		return false
	}
	cfbEncryptAVX(&c.xk[0], c.rounds, &c.reg[0], &dst[0], &src[0], len(src)/len(c.reg))
	return true
}

// haveFusedAsm: the CPU can also run SHA-1 with SHA-NI beside the AES,
// in cfbSHA1AVX.
var haveFusedAsm = haveCFBAsm && cpu.X86.HasSSSE3 && cpu.X86.HasSSE41 && hasSHANI()

func hasSHANI() bool {
	if maxLeaf, _, _, _ := cpuid(0, 0); maxLeaf < 7 {
		return false
	}
	_, ebx, _, _ := cpuid(7, 0)
	return ebx&(1<<29) != 0
}

func cpuid(leaf, sub uint32) (a, b, c, d uint32)

//go:noescape
func cfbSHA1AVX(xk *byte, rounds int, reg *byte, h *[5]uint32, dst, src *byte, chunks int)

// sha1StateSize is the length of crypto/sha1's marshalled state: "sha\x01",
// the five state words, the 64-octet block buffer, the length so far.
const sha1StateSize = 4 + 5*4 + 64 + 8

// fused encrypts p, whole 64-octet chunks with the stream at a chunk
// boundary, into dst and adds p to the modification detection code. The
// SHA-1 state goes in and out through crypto/sha1's own marshalling, which
// keeps the padding and the final sum to crypto/sha1. It reports false,
// having done nothing, if the state is not as expected.
func (s *writer) fused(dst, p []byte) bool {
	st, err := s.mdc.(encoding.BinaryAppender).AppendBinary(s.mdcState[:0])
	if err != nil || len(st) != sha1StateSize || string(st[:4]) != "sha\x01" || binary.BigEndian.Uint64(st[88:])%64 != 0 {
		s.fuse = false
		return false
	}
	s.mdcState = st
	var h [5]uint32
	for i := range h {
		h[i] = binary.BigEndian.Uint32(st[4+4*i:])
	}
	cfbSHA1AVX(&s.cfb.xk[0], s.cfb.rounds, &s.cfb.reg[0], &h, &dst[0], &p[0], len(p)/64)
	for i, v := range h {
		binary.BigEndian.PutUint32(st[4+4*i:], v)
	}
	binary.BigEndian.PutUint64(st[88:], binary.BigEndian.Uint64(st[88:])+uint64(len(p)))
	if err := s.mdc.(encoding.BinaryUnmarshaler).UnmarshalBinary(st); err != nil {
		// The octets are encrypted but not in the check: the packet is spoilt.
		s.err = fmt.Errorf("seipd: integrity check state: %w", err)
	}
	return true
}
