package rules

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealpost/sealpost/internal/testutil"
)

// clientKey is a key pair made once per test binary, as a client's.
func clientKey(t testing.TB) *openpgp.Entity {
	return testutil.OpenPGPKey(t, "Client", "key@client.example")
}

// armored writes packets made by write into an armored PGP MESSAGE with
// CRLF line ends.
func armored(t testing.TB, write func(w io.Writer)) string {
	t.Helper()
	var b bytes.Buffer
	aw, err := armor.Encode(&b, "PGP MESSAGE", nil)
	if err != nil {
		t.Fatal(err)
	}
	write(aw)
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(b.String(), "\n", "\r\n") + "\r\n"
}

// encryptedTo is a real message encrypted to the client's key (PKESK, SEIPD).
func encryptedTo(t testing.TB, plain string) string {
	return armored(t, func(w io.Writer) {
		pw, err := openpgp.Encrypt(w, []*openpgp.Entity{clientKey(t)}, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(pw, plain)
		pw.Close()
	})
}

// encryptedWith is a real message encrypted with a passphrase (SKESK,
// SEIPD; v2 of both with AEAD).
func encryptedWith(t testing.TB, aead bool) string {
	var cfg *packet.Config
	if aead {
		cfg = &packet.Config{AEADConfig: &packet.AEADConfig{}}
	}
	return armored(t, func(w io.Writer) {
		pw, err := openpgp.SymmetricallyEncrypt(w, []byte("passphrase"), nil, cfg)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(pw, "encrypted by the therapist's own client")
		pw.Close()
	})
}

// rawPacket is one new-format packet.
func rawPacket(tag byte, body []byte) []byte {
	out := []byte{0xc0 | tag}
	switch n := len(body); {
	case n < 192:
		out = append(out, byte(n))
	default:
		n -= 192
		out = append(out, byte(192+n>>8), byte(n))
	}
	return append(out, body...)
}

// packets of a real message, as bytes, for building variants.
func realPackets(t testing.TB) (sessionKey, seipd []byte) {
	t.Helper()
	var b bytes.Buffer
	pw, err := openpgp.Encrypt(&b, []*openpgp.Entity{clientKey(t)}, nil, nil, &packet.Config{})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(pw, "real")
	pw.Close()
	all := b.Bytes()
	// The session key packet comes first; its length is in its header.
	if all[0]&0x40 == 0 || all[1] >= 192 {
		t.Fatalf("unexpected first packet header % x", all[:2])
	}
	n := 2 + int(all[1])
	return all[:n], all[n:]
}

var literalPacket = rawPacket(11, append([]byte{'b', 0, 0, 0, 0, 0}, "SSN 123-45-6789"...))

func armorBytes(t testing.TB, b ...[]byte) string {
	return armored(t, func(w io.Writer) {
		for _, p := range b {
			w.Write(p)
		}
	})
}

func pgpMIME(preamble, second, epilogue string) string {
	return "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n" + preamble +
		"--b1\r\nContent-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n" +
		"--b1\r\n" + second + "--b1--\r\n" + epilogue
}

func octetPart(body string) string {
	return "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\nContent-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n" + body
}

func smimeBody(smimeType string, der []byte) string {
	return "Content-Type: application/pkcs7-mime; smime-type=" + smimeType + "; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Lines(der)
}

func b64Lines(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	return out.String() + s + "\r\n"
}

// encryptedVariants are messages (after the common header) that claim
// encryption, and whether they are what they claim.
func encryptedVariants(t testing.TB) []struct {
	name  string
	msg   string
	valid bool
} {
	enc := encryptedTo(t, "session notes")
	sk, seipd := realPackets(t)
	aeadEncrypted := rawPacket(20, append([]byte{1, 9, 2, 6}, bytes.Repeat([]byte{0xa5}, 15+40)...)) // OCB, nonce, chunks
	legacyEncrypted := rawPacket(9, bytes.Repeat([]byte{0x5a}, 40))
	marker := rawPacket(10, []byte("PGP"))
	der := cmsFixture(t, "enveloped-der.p7m")
	signed := cmsFixture(t, "signed.p7m")
	truncSEIPD := seipd[:len(seipd)-5]
	encLines := strings.Split(strings.TrimRight(enc, "\r\n"), "\r\n")
	bodyLines := encLines[2 : len(encLines)-2] // between the blank line and the checksum
	checksum, end := encLines[len(encLines)-2], encLines[len(encLines)-1]
	withLines := func(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n" }
	plain := "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
	return []struct {
		name  string
		msg   string
		valid bool
	}{
		// Real ones pass.
		{"PGP/MIME", pgpMIME("", octetPart(enc), ""), true},
		{"PGP/MIME with Thunderbird's preamble", pgpMIME("This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n", octetPart(enc), ""), true},
		{"PGP/MIME with a blank epilogue", pgpMIME("", octetPart(enc), "\r\n\r\n"), true},
		{"PGP/MIME, passphrase", pgpMIME("", octetPart(encryptedWith(t, false)), ""), true},
		{"PGP/MIME, SEIPDv2", pgpMIME("", octetPart(encryptedWith(t, true)), ""), true},
		{"PGP/MIME, AEAD encrypted data (tag 20)", pgpMIME("", octetPart(armorBytes(t, sk, aeadEncrypted)), ""), true},
		{"PGP/MIME, two session keys", pgpMIME("", octetPart(armorBytes(t, sk, sk, seipd)), ""), true},
		{"inline", plain + enc, true},
		{"inline, blank lines around", plain + "\r\n\r\n" + enc + "\r\n \r\n", true},
		{"inline, no checksum", plain + withLines(append(encLines[:len(encLines)-2:len(encLines)-2], end)...), true},
		{"S/MIME DER", smimeBody("enveloped-data", der), true},
		{"S/MIME BER, indefinite lengths", smimeBody("enveloped-data", cmsFixture(t, "enveloped-ber.p7m")), true},
		{"S/MIME 3DES", smimeBody("enveloped-data", cmsFixture(t, "enveloped-3des.p7m")), true},
		{"S/MIME AuthEnvelopedData", smimeBody("authEnveloped-data", cmsFixture(t, "authenveloped.p7m")), true},
		{"x-pkcs7-mime", strings.Replace(smimeBody("enveloped-data", der), "application/pkcs7-mime", "application/x-pkcs7-mime", 1), true},

		// Fake PGP/MIME.
		{"PGP/MIME, text/plain second part", pgpMIME("", "Content-Type: text/plain\r\n\r\nSSN 123-45-6789\r\n", ""), false},
		{"PGP/MIME, octet-stream in clear", pgpMIME("", octetPart("SSN 123-45-6789\r\n"), ""), false},
		{"PGP/MIME, armored literal data", pgpMIME("", octetPart(armorBytes(t, literalPacket)), ""), false},
		{"PGP/MIME, session key then literal data", pgpMIME("", octetPart(armorBytes(t, sk, literalPacket)), ""), false},
		{"PGP/MIME, trailing packet", pgpMIME("", octetPart(armorBytes(t, sk, seipd, literalPacket)), ""), false},
		{"PGP/MIME, trailing text", pgpMIME("", octetPart(enc+"SSN 123-45-6789\r\n"), ""), false},
		{"PGP/MIME, text before the armor", pgpMIME("", octetPart("SSN 123-45-6789\r\n"+enc), ""), false},
		{"PGP/MIME, a third part", strings.Replace(pgpMIME("", octetPart(enc), ""), "--b1--\r\n", "--b1\r\nContent-Type: text/plain\r\n\r\nSSN 123-45-6789\r\n--b1--\r\n", 1), false},
		{"PGP/MIME, text in the preamble", pgpMIME("SSN 123-45-6789\r\n", octetPart(enc), ""), false},
		{"PGP/MIME, text in the epilogue", pgpMIME("", octetPart(enc), "SSN 123-45-6789\r\n"), false},
		{"PGP/MIME, no closing boundary", strings.TrimSuffix(pgpMIME("", octetPart(enc), ""), "--b1--\r\n"), false},
		{"PGP/MIME, Version: 2", strings.Replace(pgpMIME("", octetPart(enc), ""), "Version: 1", "Version: 2", 1), false},
		{"PGP/MIME, the version part holds more", strings.Replace(pgpMIME("", octetPart(enc), ""), "Version: 1", "Version: 1\r\nSSN 123-45-6789", 1), false},
		{"PGP/MIME, only the version part", "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b1--\r\n", false},
		{"PGP/MIME, parts swapped", "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"\r\n\r\n--b1\r\n" + octetPart(enc) + "--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b1--\r\n", false},
		{"PGP/MIME, a line that begins like the boundary", strings.Replace(pgpMIME("", octetPart(enc), ""), "Version: 1\r\n", "Version: 1\r\n--b1x\r\n", 1), false},
		{"PGP/MIME, a field of the message in a part", pgpMIME("", "X-Note: SSN 123-45-6789\r\n"+octetPart(enc), ""), false},
		{"PGP/MIME, no protocol", strings.Replace(pgpMIME("", octetPart(enc), ""), "protocol=\"application/pgp-encrypted\"; ", "", 1), false},
		{"PGP/MIME, base64 multipart", strings.Replace(pgpMIME("", octetPart(enc), ""), "\r\n\r\n", "\r\nContent-Transfer-Encoding: base64\r\n\r\n", 1), false},
		{"PGP/MIME, encrypted data without session key", pgpMIME("", octetPart(armorBytes(t, seipd)), ""), false},
		{"PGP/MIME, legacy encrypted data (tag 9)", pgpMIME("", octetPart(armorBytes(t, sk, legacyEncrypted)), ""), false},
		{"PGP/MIME, marker packet first", pgpMIME("", octetPart(armorBytes(t, marker, sk, seipd)), ""), false},
		{"PGP/MIME, two encrypted data packets", pgpMIME("", octetPart(armorBytes(t, sk, seipd, seipd)), ""), false},
		{"PGP/MIME, truncated encrypted data", pgpMIME("", octetPart(armorBytes(t, sk, truncSEIPD)), ""), false},
		{"PGP/MIME, session key after the data", pgpMIME("", octetPart(armorBytes(t, sk, seipd, sk)), ""), false},
		{"PGP/MIME, armored public key", pgpMIME("", octetPart(strings.Replace(strings.Replace(enc, "PGP MESSAGE", "PGP PUBLIC KEY BLOCK", 2), "PGP MESSAGE", "PGP PUBLIC KEY BLOCK", 1)), ""), false},

		// Fake inline.
		{"inline literal data", plain + armorBytes(t, literalPacket), false},
		{"inline session key then literal data", plain + armorBytes(t, sk, literalPacket), false},
		{"inline, text after the block", plain + enc + "\r\nAnd in clear: see you on Tuesday about your depression.\r\n", false},
		{"inline, text after the checksum", plain + withLines(append(append(append([]string{}, encLines[:len(encLines)-1]...), "SSN 123-45-6789"), end)...), false},
		{"inline, a clear line inside the armor", plain + withLines(append(append([]string{encLines[0], encLines[1], "SSN 123-45-6789 in clear"}, bodyLines...), checksum, end)...), false},
		{"inline, a blank line inside the armor", plain + withLines(append(append([]string{encLines[0], encLines[1], bodyLines[0], ""}, bodyLines[1:]...), checksum, end)...), false},
		{"inline, an unknown armor header", plain + withLines(append(append([]string{encLines[0], "Note: SSN 123-45-6789", ""}, bodyLines...), checksum, end)...), false},
		{"inline, no END line", plain + withLines(encLines[:len(encLines)-1]...), false},
		{"inline, two blocks", plain + enc + enc, false},
		{"inline, base64 transfer encoding", "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Lines([]byte(enc)), false},
		{"inline as an attachment", "Content-Type: text/plain\r\nContent-Disposition: attachment; filename=a.asc\r\n\r\n" + enc, false},

		// Fake S/MIME.
		{"S/MIME, clear body", smimeBody("enveloped-data", []byte("SSN 123-45-6789 in clear\r\n")), false},
		{"S/MIME, garbage base64", "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!SSN 123-45-6789***\r\n", false},
		{"S/MIME, signed data labelled enveloped", smimeBody("enveloped-data", signed), false},
		{"S/MIME, trailing bytes", smimeBody("enveloped-data", append(append([]byte{}, der...), "SSN 123-45-6789"...)), false},
		{"S/MIME, truncated", smimeBody("enveloped-data", der[:len(der)-20]), false},
		{"S/MIME, AuthEnvelopedData labelled enveloped", smimeBody("enveloped-data", cmsFixture(t, "authenveloped.p7m")), false},
		{"S/MIME without smime-type", strings.Replace(smimeBody("enveloped-data", der), "smime-type=enveloped-data; ", "", 1), false},
		{"S/MIME, empty", smimeBody("enveloped-data", nil), false},
		{"S/MIME, the DER in clear (no transfer encoding)", "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nSSN 123-45-6789\r\n", false},
	}
}

// TestVerifyEncrypted: what passes as already encrypted, and what only
// claims to be.
func TestVerifyEncrypted(t *testing.T) {
	for _, tt := range encryptedVariants(t) {
		t.Run(tt.name, func(t *testing.T) {
			msg := "From: therapist@practice.example\r\nTo: key@client.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n" + tt.msg
			_, err := verifyEncrypted(strings.NewReader(msg))
			if (err == nil) != tt.valid {
				t.Fatalf("verifyEncrypted: %v; want valid %v", err, tt.valid)
			}
			if err != nil && !errors.Is(err, errNotEncrypted) {
				t.Fatalf("%v does not say the message is not encrypted", err)
			}
		})
	}
}

// FuzzVerifyEncrypted: the check never panics, and what passes as a whole
// encrypted message never carries a literal-data packet or text outside its
// armor.
func FuzzVerifyEncrypted(f *testing.F) {
	for _, v := range encryptedVariants(f) {
		f.Add([]byte("From: a@b.example\r\nMIME-Version: 1.0\r\n" + v.msg))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		kind, err := verifyEncrypted(bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, errNotEncrypted) {
				t.Fatalf("%v does not wrap errNotEncrypted", err)
			}
			return
		}
		if kind == "" {
			t.Fatal("valid without a kind")
		}
	})
}
