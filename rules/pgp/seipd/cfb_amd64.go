//go:build !purego

package seipd

import (
	"encoding/binary"

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
