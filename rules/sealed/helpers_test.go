package sealed

import (
	"bytes"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testPassphrase has a space, an accent and a Greek letter: readers must
// get the same prepared bytes as pdfcpu.
const testPassphrase = "Café Ωmega seven 7"

const testNotice = "Praxis Beispiel · Musterstraße 1 · 10115 Berlin. This message is confidential and meant only for its addressee."

// testOptions are the options the tests seal with.
func testOptions() Options {
	return Options{
		Passphrase:   testPassphrase,
		PracticeName: "Praxis Beispiel",
		Subject:      "Secure message from Praxis Beispiel",
		Text:         "Your therapist sent you a secure message. Open the attached message.pdf with the passphrase agreed at intake.\n\nIn a crisis call 988.",
		HTML:         "<p>Your therapist sent you a secure message. Open the attached message.pdf with the passphrase agreed at intake.</p><p>In a crisis call 988.</p>",
		Notice:       testNotice,
		MaxBytes:     64 << 20,
	}
}

// randomBytes are n reproducible bytes that do not compress.
func randomBytes(n int, seed byte) []byte {
	r := rand.NewChaCha8([32]byte{seed})
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b
}

// base64Body is b in base64, in lines of 76.
func base64Body(b []byte) string {
	enc := base64.StdEncoding.EncodeToString(b)
	var s strings.Builder
	for len(enc) > 76 {
		s.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	s.WriteString(enc + "\r\n")
	return s.String()
}

// attachment is one file of a test message.
type attachment struct {
	name string
	data []byte
}

// testBody is a text with accents, Greek, Cyrillic, a script the font
// lacks (Hebrew), a long URL and the notice at its end, as the relay
// appends it.
const testBody = "Dear Zoë,\r\n\r\nthank you for your message. Our next session is on Thursday at 10:00 " +
	"(Dvořák Straße, café entrance).\r\n\r\nΕλληνικά: Καλημέρα σας, η επόμενη συνεδρία μας είναι την Πέμπτη.\r\n" +
	"Русский: Здравствуйте! Следующая встреча состоится в четверг.\r\nשלום עולם\r\n\r\n" +
	"https://example.org/a/very/long/path/that/does/not/contain/any/spaces/at/all/and/must/be/broken/somewhere?x=1\r\n\r\n" +
	"Best wishes,\r\nAnna\r\n\r\n" + testNotice + "\r\n"

// mixedMessage is a multipart/mixed message: an alternative (text and
// HTML), then the attachments, base64.
func mixedMessage(body string, files ...attachment) []byte {
	var b bytes.Buffer
	b.WriteString("From: =?utf-8?q?Dr=2E_=CE=86=CE=BD=CE=BD=CE=B1_Papadopoulou?= <anna@praxis.example>\r\n" +
		"To: =?utf-8?q?Zo=C3=AB_M=C3=BCller?= <zoe@example.org>\r\n" +
		"Cc: Ivan Petrov <ivan@example.org>\r\n" +
		"Date: Tue, 01 Dec 2026 10:15:00 +0100\r\n" +
		"Message-ID: <m1@praxis.example>\r\nIn-Reply-To: <m0@example.org>\r\nReferences: <m0@example.org>\r\n" +
		"Subject: =?utf-8?q?Befund_=E2=80=93_SECRET-SUBJECT-MARKER_=CE=A9?=\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n" +
		"--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" +
		"--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(body)
	b.WriteString("\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML version</p>\r\n--alt--\r\n")
	for _, f := range files {
		b.WriteString("\r\n--outer\r\nContent-Type: application/octet-stream\r\n" +
			"Content-Disposition: attachment; filename*=utf-8''" + pathEscape(f.name) + "\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n")
		b.WriteString(base64Body(f.data))
	}
	b.WriteString("--outer--\r\n")
	return b.Bytes()
}

func pathEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
		}
	}
	return b.String()
}

// sealed is what Seal wrote for one message.
type sealedMessage struct {
	outer []byte
	pdf   []byte
	res   Result
}

// seal seals raw with o and takes the PDF out of the result with Go's own
// MIME reader.
func seal(t testing.TB, raw []byte, o Options) sealedMessage {
	t.Helper()
	var out bytes.Buffer
	res, err := Seal(&out, bytes.NewReader(raw), o)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	s := sealedMessage{outer: out.Bytes(), res: res}
	s.pdf = pdfOf(t, s.outer)
	return s
}

// pdfOf is the message.pdf attachment of a sealed message.
func pdfOf(t testing.TB, outer []byte) []byte {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(outer))
	if err != nil {
		t.Fatalf("read the sealed message: %v", err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("sealed message's Content-Type: %v", err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no message.pdf in the sealed message: %v", err)
		}
		if p.FileName() == "message.pdf" {
			b, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
			if err != nil {
				t.Fatalf("message.pdf's base64: %v", err)
			}
			return b
		}
	}
}

// writeFile writes b to a file in dir and returns its path.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
