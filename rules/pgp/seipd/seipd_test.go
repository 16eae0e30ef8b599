package seipd

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

var testKey = func() *openpgp.Entity {
	e, err := openpgp.NewEntity("Archive", "", "archive@practice.example", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		panic(err)
	}
	return e
}()

// seal writes a whole OpenPGP message the way sealpost does: the session key
// encrypted to testKey, then this package's SEIPDv1 around a literal packet
// holding data, written in pieces of the given size.
func seal(t testing.TB, c packet.CipherFunction, data []byte, piece int) []byte {
	t.Helper()
	key := make([]byte, c.KeySize())
	rand.Read(key)
	var out bytes.Buffer
	ek, _ := testKey.EncryptionKey(testKey.PrimaryKey.CreationTime)
	if err := packet.SerializeEncryptedKeyAEAD(&out, ek.PublicKey, c, false, key, nil); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(&out, c, key)
	if err != nil {
		t.Fatal(err)
	}
	lit, err := packet.SerializeLiteral(w, true, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for p := data; len(p) > 0; {
		n := min(piece, len(p))
		if _, err := lit.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := lit.Close(); err != nil { // closes w too
		t.Fatal(err)
	}
	return out.Bytes()
}

func open(msg []byte) ([]byte, error) {
	md, err := openpgp.ReadMessage(bytes.NewReader(msg), openpgp.EntityList{testKey}, nil, nil)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(md.UnverifiedBody) // reading to the end checks the MDC
}

// TestReadByGoCrypto: what the writer makes, go-crypto's reader decrypts
// and finds intact, across the chunk boundaries and in any write sizes.
// (gpg, sq and rnp read it in the e2e tests.)
func TestReadByGoCrypto(t *testing.T) {
	sizes := []int{0, 1, 15, 16, 17, 191, 192, 8383, 8384, chunkSize - 19, chunkSize - 18, chunkSize, chunkSize + 1, 3*chunkSize + 5, 1<<20 + 7}
	for _, c := range []packet.CipherFunction{packet.CipherAES128, packet.CipherAES192, packet.CipherAES256} {
		for _, size := range sizes {
			for _, piece := range []int{1, 7, 4096, 1 << 30} {
				if piece < 7 && size > 70000 {
					continue
				}
				data := make([]byte, size)
				rand.Read(data)
				got, err := open(seal(t, c, data, piece))
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("cipher %d, %d octets in pieces of %d: %v (got %d octets)", c, size, piece, err, len(got))
				}
			}
		}
	}
}

// TestTamperDetected: a flipped bit anywhere in the ciphertext is caught by
// the reader (the modification detection code), never returned as data.
func TestTamperDetected(t *testing.T) {
	data := bytes.Repeat([]byte("session notes, line after line\r\n"), 5000)
	msg := seal(t, packet.CipherAES256, data, 4096)
	for _, off := range []int{len(msg) / 2, len(msg) - 1, len(msg) - 21, len(msg) - 30} {
		bad := bytes.Clone(msg)
		bad[off] ^= 0x04
		got, err := open(bad)
		if err == nil && bytes.Equal(got, data) {
			t.Errorf("a bit flipped at %d of %d went unnoticed", off, len(msg))
		}
		if err == nil {
			t.Errorf("a bit flipped at %d of %d: changed data returned without an error", off, len(msg))
		}
	}
}

func TestRefusesWeakOrWrongKeys(t *testing.T) {
	if _, err := NewWriter(io.Discard, packet.CipherCAST5, make([]byte, 16)); err == nil {
		t.Error("CAST5 accepted")
	}
	if _, err := NewWriter(io.Discard, packet.CipherAES256, make([]byte, 16)); err == nil {
		t.Error("a 16-octet key accepted for AES-256")
	}
}

// BenchmarkSEIPD compares this writer with go-crypto's on 1 MiB.
func BenchmarkSEIPD(b *testing.B) {
	data := make([]byte, 1<<20)
	key := make([]byte, 32)
	for _, impl := range []struct {
		name string
		new  func(w io.Writer) (io.WriteCloser, error)
	}{
		{"sealpost", func(w io.Writer) (io.WriteCloser, error) { return NewWriter(w, packet.CipherAES256, key) }},
		{"go-crypto", func(w io.Writer) (io.WriteCloser, error) {
			return packet.SerializeSymmetricallyEncrypted(nopCloser{w}, packet.CipherAES256, false, packet.CipherSuite{}, key, nil)
		}},
	} {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				w, err := impl.new(io.Discard)
				if err != nil {
					b.Fatal(err)
				}
				for p := data; len(p) > 0; p = p[32<<10:] {
					w.Write(p[:32<<10])
				}
				w.Close()
			}
		})
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// FuzzRoundTrip: any data, written in any piece size, comes back intact
// through go-crypto's reader.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte(""), uint16(1), false)
	f.Add([]byte("session notes\r\n"), uint16(7), true)
	f.Add(bytes.Repeat([]byte{0xff}, 70000), uint16(4096), false)
	f.Fuzz(func(t *testing.T, data []byte, piece uint16, aes256 bool) {
		c := packet.CipherAES128
		if aes256 {
			c = packet.CipherAES256
		}
		got, err := open(seal(t, c, data, int(piece)+1))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%d octets in pieces of %d: %v", len(data), int(piece)+1, err)
		}
	})
}
