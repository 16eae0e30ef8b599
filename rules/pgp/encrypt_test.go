package pgp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

const clearMessage = "From: Maria <therapist@practice.example>\r\nTo: Anna <anna@client.example>\r\nCc: colleague@practice.example\r\n" +
	"Subject: Notes from our session\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@practice.example>\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
	"Hello Anna, here are the notes.\r\n\r\nNotice of Confidentiality: test.\r\n"

// armoredBlock takes the PGP message out of a PGP/MIME copy.
func armoredBlock(t testing.TB, mime []byte) []byte {
	t.Helper()
	i := bytes.Index(mime, []byte("-----BEGIN PGP MESSAGE-----"))
	j := bytes.Index(mime, []byte("-----END PGP MESSAGE-----"))
	if i < 0 || j < 0 {
		t.Fatalf("no armored message in:\n%s", mime)
	}
	return mime[i : j+len("-----END PGP MESSAGE-----")]
}

type encFixture struct {
	k         *Keyring
	enc       *Encrypter
	recipient *openpgp.Entity
	practice  *openpgp.Entity
}

func newEncFixture(t testing.TB, recipientConfig *packet.Config) *encFixture {
	t.Helper()
	f := &encFixture{k: newKeyring(t, "")}
	if recipientConfig == nil {
		f.recipient = newKey(t, "anna@client.example", testNow.AddDate(-1, 0, 0), 0)
	} else {
		var err error
		f.recipient, err = openpgp.NewEntity("Anna", "", "anna@client.example", recipientConfig)
		if err != nil {
			t.Fatal(err)
		}
	}
	f.practice = newKey(t, "practice@practice.example", testNow.AddDate(-1, 0, 0), 0)
	if _, err := f.k.Import(context.Background(), bytes.NewReader(armored(t, f.recipient)), "test"); err != nil {
		t.Fatal(err)
	}
	f.enc = NewEncrypter(f.k, f.practice)
	return f
}

func TestEncryptMIME(t *testing.T) {
	f := newEncFixture(t, nil)
	var out bytes.Buffer
	// Fields a client adds that carry the subject or other content
	// (Outlook's Thread-Topic) go inside with the subject.
	msg := "Thread-Topic: Notes from our session\r\nKeywords: anxiety\r\nX-Custom-Note: follow-up on the assessment\r\n" + clearMessage
	if err := f.enc.EncryptMIME(context.Background(), &out, strings.NewReader(msg), []string{Fingerprint(f.recipient)}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	head, _, _ := strings.Cut(s, "\r\n\r\n")
	for _, want := range []string{"Subject: ...\r\n", "To: Anna <anna@client.example>\r\n", "Cc: colleague@practice.example\r\n",
		"From: Maria <therapist@practice.example>\r\n", `protocol="application/pgp-encrypted"`, "multipart/encrypted"} {
		if !strings.Contains(head, want) {
			t.Errorf("outer header lacks %q:\n%s", want, head)
		}
	}
	for _, secret := range []string{"Notes from our session", "Hello Anna", "anxiety", "assessment"} {
		if strings.Contains(s, secret) {
			t.Fatalf("%q in clear:\n%s", secret, head)
		}
	}
	if strings.Count(s, "\r") != strings.Count(s, "\r\n") || strings.Count(s, "\n") != strings.Count(s, "\r\n") {
		t.Fatal("bare CR or LF in the copy")
	}
	if !strings.Contains(s, "Content-Type: application/pgp-encrypted") || !strings.Contains(s, "Version: 1") {
		t.Fatal("no RFC 3156 version part")
	}

	// The recipient decrypts it; the practice's signature verifies.

	raw, md, plain, err := decryptCopy(t, out.Bytes(), f.recipient)
	if err != nil {
		t.Fatal(err)
	}
	if !md.IsEncrypted || !md.IsSigned || md.SignatureError != nil {
		t.Fatalf("encrypted %v signed %v signature error %v", md.IsEncrypted, md.IsSigned, md.SignatureError)
	}
	p := string(plain)
	for _, want := range []string{"Subject: Notes from our session\r\n", `protected-headers="v1"`, "To: Anna <anna@client.example>\r\n",
		"Thread-Topic: Notes from our session\r\n", "Keywords: anxiety\r\n", "X-Custom-Note: follow-up on the assessment\r\n",
		"Content-Transfer-Encoding: 8bit\r\n", "\r\n\r\nHello Anna, here are the notes.\r\n\r\nNotice of Confidentiality: test.\r\n"} {
		if !strings.Contains(p, want) {
			t.Errorf("decrypted entity lacks %q:\n%s", want, p)
		}
	}
	// Only the recipient's and the practice's keys are named, and the
	// packet is integrity protected, SEIPDv1 for a v4 key (GnuPG 2.2 reads it).
	ids := map[uint64]bool{}
	for _, id := range md.EncryptedToKeyIds {
		ids[id] = true
	}
	rk, _ := f.recipient.EncryptionKey(testNow)
	pk, _ := f.practice.EncryptionKey(testNow)
	if len(ids) != 2 || !ids[rk.PublicKey.KeyId] || !ids[pk.PublicKey.KeyId] {
		t.Errorf("encrypted to key ids %x", md.EncryptedToKeyIds)
	}
	if v := seipdVersion(t, raw); v != 1 {
		t.Errorf("SEIPD version %d for a v4 key, want 1", v)
	}
}

// decryptCopy takes the OpenPGP message out of a PGP/MIME copy and decrypts
// it with key: the raw packets, the message details and the plaintext
// (reading it to the end checks the integrity code).
func decryptCopy(t *testing.T, copy []byte, key *openpgp.Entity) ([]byte, *openpgp.MessageDetails, []byte, error) {
	t.Helper()
	block, err := armor.Decode(bytes.NewReader(armoredBlock(t, copy)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(block.Body)
	md, err := openpgp.ReadMessage(bytes.NewReader(raw), openpgp.EntityList{key}, nil, &packet.Config{Time: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(md.UnverifiedBody)
	return raw, md, plain, err
}

// seipdVersion finds the integrity-protected data packet and its version.
func seipdVersion(t testing.TB, raw []byte) int {
	t.Helper()
	r := packet.NewReader(bytes.NewReader(raw))
	for {
		p, err := r.Next()
		if err != nil {
			t.Fatalf("no SEIPD packet: %v", err)
		}
		if se, ok := p.(*packet.SymmetricallyEncrypted); ok {
			if !se.IntegrityProtected {
				t.Fatal("encrypted without integrity protection")
			}
			return se.Version
		}
	}
}

// TestAEADOnlyForKeysThatAskForIt: a v6 key that announces SEIPDv2 gets it.
func TestAEADOnlyForKeysThatAskForIt(t *testing.T) {
	f := newEncFixture(t, &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519, Time: func() time.Time { return testNow.AddDate(0, -1, 0) },
		AEADConfig: &packet.AEADConfig{}})
	f.enc.practice = nil // the practice key is v4: with it, everyone would get SEIPDv1
	var out bytes.Buffer
	if err := f.enc.EncryptMIME(context.Background(), &out, strings.NewReader(clearMessage), []string{Fingerprint(f.recipient)}); err != nil {
		t.Fatal(err)
	}
	block, _ := armor.Decode(bytes.NewReader(armoredBlock(t, out.Bytes())))
	raw, _ := io.ReadAll(block.Body)
	if v := seipdVersion(t, raw); v != 2 {
		t.Errorf("SEIPD version %d for a v6 key asking for AEAD, want 2", v)
	}
}

func TestEncryptRefusesUnusableKeys(t *testing.T) {
	f := newEncFixture(t, nil)
	f.recipient.RevokeKey(packet.KeyCompromised, "stolen", &packet.Config{Time: func() time.Time { return testNow.AddDate(0, -1, 0) }})
	f.k.Import(context.Background(), bytes.NewReader(armored(t, f.recipient)), "test")
	err := f.enc.EncryptMIME(context.Background(), io.Discard, strings.NewReader(clearMessage), []string{Fingerprint(f.recipient)})
	if err == nil || !strings.Contains(err.Error(), "can no longer encrypt") {
		t.Fatalf("encrypting to a revoked key: %v", err)
	}
}

// bigMessage is a message with a body of n bytes, generated as it is read.
func bigMessage(n int64) io.Reader {
	head := strings.NewReader("From: therapist@practice.example\r\nTo: anna@client.example\r\nSubject: big\r\nContent-Type: application/octet-stream\r\n\r\n")
	return io.MultiReader(head, io.LimitReader(repeatReader("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"), n))
}

type repeatReader string

func (r repeatReader) Read(p []byte) (int, error) {
	for n := 0; n < len(p); {
		n += copy(p[n:], r)
	}
	return len(p), nil
}

// TestEncryptStreams: a 50 MB message is encrypted with a small, bounded
// amount of memory, not three copies of it.
func TestEncryptStreams(t *testing.T) {
	f := newEncFixture(t, nil)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	err := f.enc.EncryptMIME(context.Background(), io.Discard, bigMessage(50<<20), []string{Fingerprint(f.recipient)})
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	if grew > 32<<20 {
		t.Fatalf("heap grew by %d MB while encrypting 50 MB", grew>>20)
	}
}

func BenchmarkEncrypt4KBTwoX25519(b *testing.B) {
	f := newEncFixture(b, nil)
	second := newKey(b, "bob@client.example", testNow.AddDate(-1, 0, 0), 0)
	f.k.Import(context.Background(), bytes.NewReader(armored(b, second)), "test")
	f.enc.practice = nil
	msg := clearMessage + strings.Repeat("x", 4000) + "\r\n"
	fprs := []string{Fingerprint(f.recipient), Fingerprint(second)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := f.enc.EncryptMIME(context.Background(), io.Discard, strings.NewReader(msg), fprs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncryptLarge(b *testing.B) {
	f := newEncFixture(b, nil)
	b.SetBytes(16 << 20)
	for i := 0; i < b.N; i++ {
		if err := f.enc.EncryptMIME(context.Background(), io.Discard, bigMessage(16<<20), []string{Fingerprint(f.recipient)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawSymmetric is go-crypto's own symmetric encryption, without
// the armor, the signature and the MIME around it, for comparison with
// BenchmarkEncryptLarge.
func BenchmarkRawSymmetric(b *testing.B) {
	b.SetBytes(16 << 20)
	for i := 0; i < b.N; i++ {
		w, err := openpgp.SymmetricallyEncrypt(io.Discard, []byte("passphrase"), nil, &packet.Config{DefaultCipher: packet.CipherAES256})
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(w, io.LimitReader(repeatReader("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 16<<20))
		w.Close()
	}
}

// armorData armors data, written in pieces of the given size, as a copy's
// body is armored.
func armorData(t testing.TB, data []byte, piece int) []byte {
	t.Helper()
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	a, err := armorCRLF(bw)
	if err != nil {
		t.Fatal(err)
	}
	for p := data; len(p) > 0; p = p[min(piece, len(p)):] {
		if _, err := a.Write(p[:min(piece, len(p))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// crc24 is OpenPGP's checksum by its definition, a bit at a time (RFC 4880
// 6.1).
func crc24(data []byte) uint32 {
	crc := uint32(0xb704ce)
	for _, b := range data {
		crc ^= uint32(b) << 16
		for range 8 {
			crc <<= 1
			if crc&0x1000000 != 0 {
				crc ^= 0x1864cfb
			}
		}
	}
	return crc & 0xffffff
}

// checkArmor checks that armored is data in CRLF-ended armor of lines of
// one length (the last perhaps shorter) with the CRC-24 of data, which
// GnuPG 2.2 requires, and that go-crypto's decoder reads data back.
func checkArmor(t testing.TB, armored, data []byte, piece int) {
	t.Helper()
	s := string(armored)
	if strings.Contains(strings.ReplaceAll(s, "\r\n", ""), "\n") || strings.Contains(strings.ReplaceAll(s, "\r\n", ""), "\r") {
		t.Fatalf("%d bytes in pieces of %d: a bare LF or CR in the armor", len(data), piece)
	}
	lines := strings.Split(s, "\r\n")
	if lines[0] != "-----BEGIN PGP MESSAGE-----" || lines[1] != "" || lines[len(lines)-2] != "-----END PGP MESSAGE-----" || lines[len(lines)-1] != "" {
		t.Fatalf("%d bytes in pieces of %d: not a PGP MESSAGE armor:\n%s", len(data), piece, s)
	}
	sum := crc24(data)
	if want := "=" + base64.StdEncoding.EncodeToString([]byte{byte(sum >> 16), byte(sum >> 8), byte(sum)}); lines[len(lines)-3] != want {
		t.Fatalf("%d bytes in pieces of %d: checksum line %q, want %q", len(data), piece, lines[len(lines)-3], want)
	}
	body := lines[2 : len(lines)-3] // the Base64 lines
	for i, l := range body[:max(len(body)-1, 0)] {
		if len(l) != len(body[0]) || len(l) > 76 {
			t.Fatalf("%d bytes in pieces of %d: armor line %d is %d long, the first %d", len(data), piece, i, len(l), len(body[0]))
		}
	}
	block, err := armor.Decode(bytes.NewReader(armored))
	if err != nil {
		t.Fatalf("%d bytes in pieces of %d: %v", len(data), piece, err)
	}
	got, err := io.ReadAll(block.Body)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%d bytes in pieces of %d: round trip failed: %v", len(data), piece, err)
	}
}

// TestArmorCRLF: the copy's armor has CRLF line ends and the CRC-24, and
// go-crypto's decoder reads it, whatever the sizes of the writes.
func TestArmorCRLF(t *testing.T) {
	for _, n := range []int{0, 1, 47, 48, 56, 57, 58, 1000, 100000, 64*57 + 5, 300001} {
		for _, piece := range []int{1, 7, 48, 57, 100, 5000, 65*57 + 1, 1 << 30} {
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(i * 7)
			}
			checkArmor(t, armorData(t, data, piece), data, piece)
		}
	}
}

func BenchmarkArmor(b *testing.B) {
	data := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	bw := bufio.NewWriter(io.Discard)
	for b.Loop() {
		a, _ := armorCRLF(bw)
		for p := data; len(p) > 0; p = p[32<<10:] {
			a.Write(p[:32<<10])
		}
		a.Close()
		bw.Flush()
	}
}

// TestEncryptWithoutPracticeKey: without a practice key the copy is
// encrypted but unsigned, and still reads (SEIPDv1 around literal data).
func TestEncryptWithoutPracticeKey(t *testing.T) {
	f := newEncFixture(t, nil)
	f.enc.practice = nil
	var out bytes.Buffer
	if err := f.enc.EncryptMIME(context.Background(), &out, strings.NewReader(clearMessage), []string{Fingerprint(f.recipient)}); err != nil {
		t.Fatal(err)
	}
	raw, md, plain, err := decryptCopy(t, out.Bytes(), f.recipient)
	if err != nil || md.IsSigned || !strings.Contains(string(plain), "Hello Anna, here are the notes.") {
		t.Fatalf("signed %v, %v:\n%s", md.IsSigned, err, plain)
	}
	if v := seipdVersion(t, raw); v != 1 {
		t.Errorf("SEIPD version %d, want 1", v)
	}
}

// FuzzArmor: any data in any piece size armors into CRLF lines with the
// right CRC-24, which go-crypto's decoder reads back.
func FuzzArmor(f *testing.F) {
	f.Add([]byte("x"), uint16(0))
	f.Add(bytes.Repeat([]byte("0123456789"), 500), uint16(47))
	f.Fuzz(func(t *testing.T, data []byte, piece uint16) {
		step := int(piece) + 1
		checkArmor(t, armorData(t, data, step), data, step)
	})
}
