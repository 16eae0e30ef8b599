package sealed

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/internal/testutil"
)

// richMessage is a message with everything the PDF must carry: text in
// three alphabets and one the font lacks, an attachment with a non-ASCII
// name, two with the same name, a multipart nested in the message, and a
// forwarded message. files are the attachments as a reader must get them.
func richMessage() (raw []byte, files map[string][]byte) {
	inner := "From: Someone <someone@example.net>\r\nSubject: Forwarded note\r\nContent-Type: text/plain\r\n\r\nThe forwarded text.\r\n"
	files = map[string][]byte{
		"Bericht für Ärztin – ώρα №5.bin": randomBytes(1<<20, 1),
		"notes.txt":     []byte("plain notes\r\n"),
		"notes (2).txt": []byte("second file with the same name\r\n"),
		"inner.bin":     randomBytes(5000, 2),
		"forwarded.eml": []byte(inner),
	}
	var b bytes.Buffer
	b.WriteString("From: =?utf-8?q?Dr=2E_=CE=86=CE=BD=CE=BD=CE=B1_Papadopoulou?= <anna@praxis.example>\r\n" +
		"To: =?utf-8?q?Zo=C3=AB_M=C3=BCller?= <zoe@example.org>\r\nCc: Ivan Petrov <ivan@example.org>\r\n" +
		"Date: Tue, 01 Dec 2026 10:15:00 +0100\r\nMessage-ID: <m2@praxis.example>\r\n" +
		"Subject: =?utf-8?q?Befund_=E2=80=93_SECRET-SUBJECT-MARKER_=CE=A9?=\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n" +
		"--o\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + testBody +
		"\r\n--o\r\nContent-Type: multipart/mixed; boundary=\"n\"\r\n\r\n--n\r\n" +
		"Content-Type: application/octet-stream; name=\"inner.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64Body(files["inner.bin"]) + "--n--\r\n" +
		"\r\n--o\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"forwarded.eml\"\r\n\r\n" + inner)
	for _, name := range []string{"Bericht für Ärztin – ώρα №5.bin", "notes.txt", "notes (2).txt"} {
		shown := strings.Replace(name, " (2)", "", 1)
		b.WriteString("\r\n--o\r\nContent-Type: application/octet-stream\r\n" +
			"Content-Disposition: attachment; filename*=utf-8''" + pathEscape(shown) + "\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + base64Body(files[name]))
	}
	b.WriteString("--o--\r\n")
	return b.Bytes(), files
}

// run runs a program and returns its output; wantOK says whether it must
// succeed or must fail.
func run(t *testing.T, wantOK bool, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if (err == nil) != wantOK {
		t.Errorf("%s %s: %v (want success: %v)\n%s", name, strings.Join(args, " "), err, wantOK, out)
	}
	return string(out)
}

// TestPDFReaders opens sealed PDFs with the readers clients and auditors
// use: the first sealed with a passphrase, and the second, which reuses
// what was derived from it (keyCache).
func TestPDFReaders(t *testing.T) {
	testutil.RequireTools(t, "qpdf", "pdftotext", "pdfdetach", "pdfinfo", "mutool", "strings")
	raw, files := richMessage()
	for _, name := range []string{"first", "second"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := seal(t, raw, testOptions())
			pdf := writeFile(t, dir, "message.pdf", s.pdf)
			checkEncryption(t, dir, pdf)
			checkText(t, pdf)
			checkAttachments(t, dir, pdf, raw, files)
			checkRendering(t, dir, pdf)
		})
	}
}

func checkEncryption(t *testing.T, dir, pdf string) {
	P := "--password=" + testPassphrase
	enc := run(t, true, "qpdf", "--show-encryption", P, pdf)
	for _, want := range []string{"R = 6", "stream encryption method: AESv3", "string encryption method: AESv3",
		"file encryption method: AESv3", "Supplied password is user password"} {
		if !strings.Contains(enc, want) {
			t.Errorf("qpdf --show-encryption lacks %q:\n%s", want, enc)
		}
	}
	run(t, true, "qpdf", "--check", P, pdf)
	run(t, true, "qpdf", "--decrypt", P, pdf, filepath.Join(dir, "decrypted.pdf"))
	run(t, false, "qpdf", "--decrypt", pdf, filepath.Join(dir, "nopassword.pdf"))
	run(t, false, "qpdf", "--decrypt", "--password=Cafe Omega seven 7", pdf, filepath.Join(dir, "wrong.pdf"))
	run(t, false, "qpdf", "--decrypt", "--password="+strings.ToUpper(testPassphrase), pdf, filepath.Join(dir, "wrong2.pdf"))
	decrypted, err := os.ReadFile(filepath.Join(dir, "decrypted.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, meta := range []string{"/Info", "/Metadata", "/Title", "/Producer", "/Author"} {
		if bytes.Contains(decrypted, []byte(meta)) {
			t.Errorf("the decrypted PDF has %s", meta)
		}
	}
	info := run(t, false, "pdfinfo", pdf)
	printable := run(t, true, "strings", "-n", "4", pdf)
	for _, secret := range []string{"SECRET", "Befund", "Bericht", "notes", "forwarded", "message.eml", "zoe@", "anna@", "Praxis"} {
		if strings.Contains(info, secret) || strings.Contains(printable, secret) {
			t.Errorf("%q can be read without the passphrase (pdfinfo or strings)", secret)
		}
	}
	withPassword := run(t, true, "pdfinfo", "-upw", testPassphrase, pdf)
	if strings.Contains(withPassword, "SECRET") || !strings.Contains(strings.Join(strings.Fields(withPassword), " "), "PDF version: 2.0") {
		t.Errorf("pdfinfo -upw:\n%s", withPassword)
	}
}

func checkText(t *testing.T, pdf string) {
	text := run(t, true, "pdftotext", "-upw", testPassphrase, "-layout", pdf, "-")
	for _, want := range []string{"Befund – SECRET-SUBJECT-MARKER Ω", "Dr. Άννα Papadopoulou <anna@praxis.example>",
		"Zoë Müller <zoe@example.org>", "Ivan Petrov", "Tue, 01 Dec 2026 10:15:00 +0100",
		"Our next session is on Thursday", "Dvořák Straße", "Καλημέρα σας, η επόμενη συνεδρία", "Здравствуйте! Следующая встреча",
		"Musterstraße 1 · 10115 Berlin", "cannot show", "□", "message.txt", "Bericht für Ärztin – ώρα №5.bin (1 MB)",
		"forwarded.eml", "Page 1 of 1", "Secure message from Praxis Beispiel"} {
		if !strings.Contains(text, want) {
			t.Errorf("pdftotext does not show %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "This message is confidential"); n != 1 {
		t.Errorf("the notice is shown %d times, want once", n)
	}
	run(t, false, "pdftotext", pdf, "-")
}

func checkAttachments(t *testing.T, dir, pdf string, raw []byte, files map[string][]byte) {
	out := filepath.Join(dir, "files")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, true, "pdfdetach", "-upw", testPassphrase, "-saveall", "-o", out, pdf)
	want := map[string][]byte{"message.eml": raw}
	for k, v := range files {
		want[k] = v
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("pdfdetach gave %s: %d bytes, %v; want the original's %d bytes", name, len(got), err, len(data))
		}
	}
	txt, err := os.ReadFile(filepath.Join(out, "message.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Subject: Befund – SECRET-SUBJECT-MARKER Ω", "שלום עולם", "Здравствуйте", testNotice} {
		if !strings.Contains(string(txt), want) {
			t.Errorf("message.txt lacks %q:\n%s", want, txt)
		}
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != len(want)+1 {
		t.Errorf("pdfdetach saved %d files, want %d", len(entries), len(want)+1)
	}
	list := run(t, true, "qpdf", "--password="+testPassphrase, "--list-attachments", pdf)
	if !strings.Contains(list, "Bericht für Ärztin – ώρα №5.bin") {
		t.Errorf("qpdf --list-attachments does not show the name in UTF-8:\n%s", list)
	}
}

func checkRendering(t *testing.T, dir, pdf string) {
	img := filepath.Join(dir, "page1.png")
	run(t, true, "mutool", "draw", "-p", testPassphrase, "-r", "60", "-o", img, pdf, "1")
	if n, total := inkedPixels(t, img); n < total/200 {
		t.Errorf("mutool's page 1 is blank: %d of %d pixels are not white", n, total)
	}
	run(t, false, "mutool", "draw", "-r", "60", "-o", filepath.Join(dir, "nopw.png"), pdf, "1")
	if dst := os.Getenv("SEALPOST_SEALED_RENDERS"); dst != "" { // to look at them
		b, _ := os.ReadFile(img)
		_ = os.WriteFile(filepath.Join(dst, "mutool-"+strings.ReplaceAll(t.Name(), "/", "-")+".png"), b, 0o644)
	}
}

// inkedPixels counts the pixels of a PNG that are not (nearly) white.
func inkedPixels(t *testing.T, path string) (inked, total int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return countInk(img)
}

func countInk(img image.Image) (inked, total int) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r < 0xe000 || g < 0xe000 || bl < 0xe000 {
				inked++
			}
			total++
		}
	}
	return inked, total
}

// TestPDFPages: what the page shows for a long text, for a text longer
// than the PDF lays out, for an HTML-only message, and for a message with
// no text at all.
func TestPDFPages(t *testing.T) {
	testutil.RequireTools(t, "pdftotext", "pdfinfo", "mutool")
	para := "Long text for many pages, with Ελληνικά and Кириллица in it, wrapped at the page's width. "
	long := strings.Repeat(strings.Repeat(para, 6)+"\r\n\r\n", 120) + "THE-END-MARKER\r\n"
	huge := strings.Repeat(strings.Repeat(para, 6)+"\r\n\r\n", 4000)
	tests := []struct {
		name  string
		raw   string
		pages string
		want  []string
		not   []string
	}{
		{"long text", string(mixedMessage(long)), "", []string{"Page 1 of", "Page 2 of", "THE-END-MARKER", "Musterstraße"}, nil},
		{"text beyond the pages laid out", string(mixedMessage(huge)), "300",
			[]string{"Page 300 of 300", "The text goes on beyond the 300 pages this PDF shows"}, nil},
		{"HTML only", "From: a@b.example\r\nSubject: html\r\nContent-Type: text/html; charset=iso-8859-1\r\n" +
			"Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>Caf=E9: fill in <a href=3D\"https://forms.example.org/x\">the form</a>" +
			"</p><script>alert(1)</script>\r\n", "1",
			[]string{"Café: fill in the form (https://forms.example.org/x)"}, []string{"alert", "<p>"}},
		{"no text", "From: a@b.example\r\nSubject: scan\r\nContent-Type: application/pdf; name=scan.pdf\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n", "1",
			[]string{"This message has no text", "scan.pdf (5 bytes)"}, nil},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := seal(t, []byte(tc.raw), testOptions())
			pdf := writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".pdf", s.pdf)
			text := strings.Join(strings.Fields(run(t, true, "pdftotext", "-upw", testPassphrase, pdf, "-")), " ")
			for _, want := range tc.want {
				if !strings.Contains(text, want) {
					t.Errorf("pdftotext does not show %q", want)
				}
			}
			for _, not := range tc.not {
				if strings.Contains(text, not) {
					t.Errorf("pdftotext shows %q", not)
				}
			}
			info := strings.Join(strings.Fields(run(t, true, "pdfinfo", "-upw", testPassphrase, pdf)), " ")
			if tc.pages != "" && !strings.Contains(info, "Pages: "+tc.pages+" ") {
				t.Errorf("pdfinfo: %s", info)
			}
			if tc.name == "long text" {
				img := filepath.Join(dir, "long-p2.png")
				run(t, true, "mutool", "draw", "-p", testPassphrase, "-r", "60", "-o", img, pdf, "2")
				if n, total := inkedPixels(t, img); n < total/200 {
					t.Errorf("page 2 is blank: %d of %d pixels", n, total)
				}
				if dst := os.Getenv("SEALPOST_SEALED_RENDERS"); dst != "" {
					b, _ := os.ReadFile(img)
					_ = os.WriteFile(filepath.Join(dst, "mutool-long-p2.png"), b, 0o644)
				}
			}
		})
	}
}
