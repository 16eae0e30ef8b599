package sealed

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestSealOuterMessage(t *testing.T) {
	raw := mixedMessage(testBody, attachment{"Bericht für Ärztin.bin", randomBytes(3000, 1)})
	s := seal(t, raw, testOptions())

	msg, err := mail.ReadMessage(bytes.NewReader(s.outer))
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{
		"From":        "=?utf-8?q?Dr=2E_=CE=86=CE=BD=CE=BD=CE=B1_Papadopoulou?= <anna@praxis.example>",
		"To":          "=?utf-8?q?Zo=C3=AB_M=C3=BCller?= <zoe@example.org>",
		"Cc":          "Ivan Petrov <ivan@example.org>",
		"Date":        "Tue, 01 Dec 2026 10:15:00 +0100",
		"Message-Id":  "<m1@praxis.example>",
		"In-Reply-To": "<m0@example.org>",
		"References":  "<m0@example.org>",
		"Subject":     "Secure message from Praxis Beispiel",
	} {
		if got := msg.Header.Get(field); got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	for _, secret := range []string{"SECRET-SUBJECT-MARKER", "Befund", "Zoë", "Bericht", "HTML version", "Καλημέρα"} {
		if bytes.Contains(s.outer, []byte(secret)) {
			t.Errorf("the sealed message shows %q outside the PDF", secret)
		}
	}
	if bytes.Contains(s.outer, []byte("\n")) && bytes.Count(s.outer, []byte("\r\n")) != bytes.Count(s.outer, []byte("\n")) {
		t.Error("the sealed message has lines that do not end in CRLF")
	}

	types := mimeTypes(t, s.outer)
	if strings.Join(types, " ") != "multipart/mixed multipart/alternative text/plain text/html application/pdf" {
		t.Errorf("structure %v", types)
	}
	sum := sha256.Sum256(s.pdf)
	if s.res.PDFSHA256 != hex.EncodeToString(sum[:]) || s.res.PDFSize != int64(len(s.pdf)) {
		t.Errorf("Result %+v does not describe the attached PDF (%d bytes)", s.res, len(s.pdf))
	}
}

// mimeTypes lists a message's media types, depth first.
func mimeTypes(t *testing.T, raw []byte) []string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(ct string, body io.Reader)
	walk = func(ct string, body io.Reader) {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, mt)
		if !strings.HasPrefix(mt, "multipart/") {
			return
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			walk(p.Header.Get("Content-Type"), p)
		}
	}
	walk(msg.Header.Get("Content-Type"), msg.Body)
	return out
}

func TestSealWithoutHTMLHasOneTextBody(t *testing.T) {
	o := testOptions()
	o.HTML = ""
	s := seal(t, mixedMessage("Hello.\r\n"), o)
	if got := strings.Join(mimeTypes(t, s.outer), " "); got != "multipart/mixed text/plain application/pdf" {
		t.Errorf("structure %s", got)
	}
}

func TestPDFKeepsNothingInClear(t *testing.T) {
	raw := mixedMessage(testBody, attachment{"Bericht für Ärztin.bin", randomBytes(3000, 1)}, attachment{"notes-file.txt", []byte("x")})
	for i := range 2 { // the second uses the derived keys the first left
		s := seal(t, raw, testOptions())
		if !bytes.HasPrefix(s.pdf, []byte("%PDF-2.0")) {
			t.Fatalf("the PDF starts %q", s.pdf[:min(len(s.pdf), 12)])
		}
		for _, clear := range []string{"SECRET-SUBJECT-MARKER", "Befund", "Bericht", "notes-file", "message.eml", "message.txt",
			"zoe@example.org", "anna@praxis", "Praxis", "/Info", "/Metadata", "/Producer", "/Title", "pdfcpu"} {
			if bytes.Contains(s.pdf, []byte(clear)) {
				t.Errorf("PDF %d shows %q without the passphrase", i+1, clear)
			}
		}
		if !bytes.Contains(s.pdf, []byte("/AESV3")) || !bytes.Contains(s.pdf, []byte("/R 6")) {
			t.Errorf("PDF %d does not name AESV3 and revision 6", i+1)
		}
	}
}

func TestSealRefuses(t *testing.T) {
	deep := strings.Repeat("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n", 60) + "Content-Type: text/plain\r\n\r\nx\r\n"
	tests := []struct {
		name string
		raw  string
		o    func(*Options)
		want error // ErrTooLarge, or nil for a *MalformedError
	}{
		{"over MaxBytes", string(mixedMessage(testBody, attachment{"a.bin", randomBytes(4000, 2)})),
			func(o *Options) { o.MaxBytes = 4000 }, ErrTooLarge},
		{"base64 with a character outside its alphabet",
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n" +
				"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0K*GgoAAAA\r\n--b--\r\n", nil, nil},
		{"base64 going on after its end",
			"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD=QUJD\r\n", nil, nil},
		{"base64 text part cut mid-group",
			"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJDR\r\n", nil, nil},
		{"quoted-printable with a NUL",
			"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nab=\x00cd\r\n", nil, nil},
		{"a transfer encoding nobody reads",
			"Content-Type: application/zip\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a\r\n", nil, nil},
		{"a multipart cut off before its end",
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n", nil, nil},
		{"a multipart without a boundary", "Content-Type: multipart/mixed\r\n\r\nhi\r\n", nil, nil},
		{"nested too deep", deep, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			if tc.o != nil {
				tc.o(&o)
			}
			var out bytes.Buffer
			_, err := Seal(&out, strings.NewReader(tc.raw), o)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("Seal: %v, want %v", err, tc.want)
				}
			} else {
				var me *MalformedError
				if !errors.As(err, &me) || me.Reason == "" {
					t.Fatalf("Seal: %v, want a *MalformedError", err)
				}
			}
			if out.Len() != 0 {
				t.Fatalf("Seal wrote %d bytes before refusing", out.Len())
			}
		})
	}
}

func TestSealNeedsAPreparedPassphrase(t *testing.T) {
	for _, p := range []string{"", "ｆｕｌｌｗｉｄｔｈ passphrase", "café au lait\u00a0noir", strings.Repeat("x", 128)} {
		o := testOptions()
		o.Passphrase = p
		var out bytes.Buffer
		if _, err := Seal(&out, bytes.NewReader(mixedMessage("hi")), o); !errors.Is(err, errNotPrepared) {
			t.Errorf("passphrase %q: %v, want errNotPrepared", p, err)
		}
	}
}

// TestReadMessageAllocatesOnce: the message is read into one buffer of its
// size, with the room pdfcpu pads into, whether or not the reader tells
// its size, and a reader that says less than it holds is read whole.
func TestReadMessage(t *testing.T) {
	data := randomBytes(300<<10, 3)
	for name, r := range map[string]io.Reader{
		"bytes.Reader":    bytes.NewReader(data),
		"plain reader":    io.MultiReader(bytes.NewReader(data[:1000]), bytes.NewReader(data[1000:])),
		"understated len": &shortLen{Reader: bytes.NewReader(data)},
	} {
		got, err := readMessage(r, 1<<20)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
			continue
		}
		if cap(got) < len(got)+padSpare {
			t.Errorf("%s: no room for padding: cap %d, len %d", name, cap(got), len(got))
		}
	}
	if _, err := readMessage(bytes.NewReader(data), int64(len(data)-1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte over: %v", err)
	}
	if got, err := readMessage(bytes.NewReader(data), int64(len(data))); err != nil || len(got) != len(data) {
		t.Errorf("exactly the limit: %d, %v", len(got), err)
	}
}

type shortLen struct{ *bytes.Reader }

func (s *shortLen) Len() int { return s.Reader.Len() / 2 }

// TestSealConcurrently: sealing in parallel shares the font and the
// derived keys (run with -race); each PDF opens with its own passphrase.
func TestSealConcurrently(t *testing.T) {
	passphrases := []string{testPassphrase, "another client's passphrase"}
	raw := mixedMessage(testBody, attachment{"a.bin", randomBytes(50000, 7)})
	pdfs := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range pdfs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := testOptions()
			o.Passphrase = passphrases[i%2]
			var out bytes.Buffer
			if _, err := Seal(&out, bytes.NewReader(raw), o); err != nil {
				t.Error(err)
				return
			}
			pdfs[i] = pdfOf(t, out.Bytes())
		}()
	}
	wg.Wait()
	if _, err := exec.LookPath("qpdf"); err != nil {
		return // TestPDFReaders requires qpdf; here it only adds a check
	}
	dir := t.TempDir()
	for i, pdf := range pdfs {
		path := writeFile(t, dir, strconv.Itoa(i)+".pdf", pdf)
		if out, err := exec.Command("qpdf", "--check", "--password="+passphrases[i%2], path).CombinedOutput(); err != nil {
			t.Errorf("PDF %d: %v\n%s", i, err, out)
		}
		if exec.Command("qpdf", "--check", "--password="+passphrases[(i+1)%2], path).Run() == nil {
			t.Errorf("PDF %d opens with the other client's passphrase", i)
		}
	}
}
