package seipd

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"math/rand/v2"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// cfbRef is the standard library's CFB with a zero IV, which is what
// OpenPGP's CFB without resynchronisation is.
func cfbRef(t testing.TB, key, data []byte) []byte {
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(data))
	cipher.NewCFBEncrypter(b, make([]byte, aes.BlockSize)).XORKeyStream(out, data) //nolint:staticcheck // the reference, deprecated for new protocols only
	return out
}

// cfbOurs runs the writer's CFB over data in pieces of the given size,
// with the assembly loop or without it.
func cfbOurs(t testing.TB, key, data []byte, piece int, asm bool) []byte {
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	c := cfb{b: b, reg: make([]byte, 16), ks: make([]byte, 16), used: 16}
	if asm {
		c.xk, c.rounds = expandKey(key)
	}
	out := make([]byte, len(data))
	for off := 0; off < len(data); off += piece {
		end := min(off+piece, len(data))
		c.xor(out[off:end], data[off:end])
	}
	return out
}

// TestCFBMatchesStandardLibrary: the assembly loop (where this CPU has it)
// and the portable one both give the standard library's CFB octets, for
// each AES key size and for writes that start and end mid-block.
func TestCFBMatchesStandardLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 70000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	paths := []bool{false}
	if haveCFBAsm {
		paths = append(paths, true)
	} else {
		t.Log("no AES-NI with AVX here: only the portable path is checked")
	}
	for _, keyLen := range []int{16, 24, 32} {
		key := make([]byte, keyLen)
		for i := range key {
			key[i] = byte(rng.Uint32())
		}
		for _, n := range []int{0, 1, 15, 16, 17, 32, 33, 4096, 70000} {
			want := cfbRef(t, key, data[:n])
			for _, piece := range []int{1, 7, 16, 31, 48, 1000, 70000} {
				for _, asm := range paths {
					if got := cfbOurs(t, key, data[:n], piece, asm); !bytes.Equal(got, want) {
						t.Errorf("AES-%d, %d octets in pieces of %d, assembly %v: differs from crypto/cipher", keyLen*8, n, piece, asm)
					}
				}
			}
		}
	}
}

// FuzzCFB: any key, data and piece size give the standard library's CFB.
func FuzzCFB(f *testing.F) {
	f.Add(make([]byte, 32), []byte("session notes\r\n"), uint16(5))
	f.Add(bytes.Repeat([]byte{0xa5}, 24), bytes.Repeat([]byte{1}, 300), uint16(33))
	f.Add(bytes.Repeat([]byte{0x5a}, 16), bytes.Repeat([]byte{2}, 5000), uint16(4096))
	f.Fuzz(func(t *testing.T, key, data []byte, piece uint16) {
		switch len(key) {
		case 16, 24, 32:
		default:
			return
		}
		want := cfbRef(t, key, data)
		if got := cfbOurs(t, key, data, int(piece)+1, haveCFBAsm); !bytes.Equal(got, want) {
			t.Fatalf("AES-%d, %d octets in pieces of %d: differs from crypto/cipher", len(key)*8, len(data), int(piece)+1)
		}
	})
}

// TestFusedMatchesSeparate: the loop that runs CFB and the SHA-1 check
// together writes the same packet, octet for octet, as CFB and
// crypto/sha1 one after the other, for every write pattern.
func TestFusedMatchesSeparate(t *testing.T) {
	if !haveFusedAsm {
		t.Skip("no AES-NI, AVX and SHA-NI here: there is no fused loop to check")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 200000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	seal := func(c packet.CipherFunction, key, data []byte, piece int, fuse bool) []byte {
		var out bytes.Buffer
		w, err := newWriter(&out, c, key, bytes.NewReader(bytes.Repeat([]byte{7}, 16)), fuse)
		if err != nil {
			t.Fatal(err)
		}
		for p := data; len(p) > 0; {
			k := min(piece, len(p))
			if _, err := w.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if fuse && !w.fuse && c != packet.CipherAES192 {
			t.Fatalf("the fused loop gave up (crypto/sha1's marshalled state changed?)")
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	for _, c := range []packet.CipherFunction{packet.CipherAES128, packet.CipherAES192, packet.CipherAES256} {
		key := make([]byte, c.KeySize())
		for i := range key {
			key[i] = byte(rng.Uint32())
		}
		for _, n := range []int{0, 1, 45, 46, 47, 63, 64, 65, 110, 1000, 65535, 70000, 200000} {
			for _, piece := range []int{1, 7, 64, 100, 4096, 32 << 10, 1 << 20} {
				if n > 5000 && piece < 64 {
					continue
				}
				if got, want := seal(c, key, data[:n], piece, true), seal(c, key, data[:n], piece, false); !bytes.Equal(got, want) {
					t.Errorf("cipher %d, %d octets in pieces of %d: the fused loop's packet differs", c, n, piece)
				}
			}
		}
	}
}
