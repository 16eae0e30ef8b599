package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"

	"github.com/sealpost/sealpost/internal/textutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const testNotice = `Notice of Confidentiality: This email may contain protected health information. It is intended only for the person to whom it is addressed. If you received it in error, please tell the sender and delete it.`

// leaf is one leaf part as a parser sees it.
type leaf struct {
	Type        string `json:"type"`
	Disposition string `json:"disposition"`
	SHA256      string `json:"sha256"`
	Text        string `json:"text"`
}

// goLeaves parses a message with go-message and lists its leaf parts.
func goLeaves(t *testing.T, raw []byte) []leaf {
	t.Helper()
	m, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		t.Fatalf("go-message cannot read the output: %v", err)
	}
	var out []leaf
	err = m.Walk(func(path []int, e *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return err
		}
		if e.MultipartReader() != nil {
			return nil
		}
		b, err := io.ReadAll(e.Body)
		if err != nil {
			return err
		}
		mt, _, _ := e.Header.ContentType()
		disp, _, _ := e.Header.ContentDisposition()
		sum := sha256.Sum256(b)
		l := leaf{Type: mt, Disposition: disp, SHA256: hex.EncodeToString(sum[:])}
		if strings.HasPrefix(mt, "text/") {
			l.Text = string(b)
		}
		out = append(out, l)
		return nil
	})
	if err != nil {
		t.Fatalf("go-message cannot walk the output: %v", err)
	}
	return out
}

type pyView struct {
	Parts   []leaf   `json:"parts"`
	Defects []string `json:"defects"`
	Subject string   `json:"subject"`
}

// pyLeaves parses files with Python's email package (an independent parser).
func pyLeaves(t *testing.T, paths ...string) []pyView {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("SEALPOST_E2E") == "require" {
			t.Fatal("SEALPOST_E2E=require but python3 is missing")
		}
		t.Skip("skipped: needs python3 for the independent MIME parser")
	}
	out, err := exec.Command("python3", append([]string{filepath.Join("testdata", "mimecheck.py")}, paths...)...).Output()
	if err != nil {
		t.Fatalf("mimecheck.py: %v", err)
	}
	var views []pyView
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var v pyView
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("mimecheck.py output %q: %v", line, err)
		}
		views = append(views, v)
	}
	return views
}

func isBody(l leaf) bool {
	return (l.Type == "text/plain" || l.Type == "text/html") && l.Disposition != "attachment"
}

// TestNoticeCorpus runs the transform over messages shaped like those real
// clients send, compares with golden files, and checks each result with
// go-message and with Python's email package: the notice is in every body
// text the recipient reads, attachments are byte for byte the same, headers
// other than the ones the transform must touch are unchanged, and no Bcc
// header is left.
func TestNoticeCorpus(t *testing.T) {
	defer func(f func() string) { newBoundary = f }(newBoundary)
	newBoundary = func() string { return "sealpost-golden-boundary" }
	files, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*.eml"))
	if len(files) < 12 {
		t.Fatalf("corpus has %d messages", len(files))
	}
	n := newNoticeText(testNotice)
	outDir := t.TempDir()
	var outs []string
	for _, in := range files {
		name := filepath.Base(in)
		raw, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		res, err := transformNotice(&out, bytes.NewReader(raw), n)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		golden := filepath.Join("testdata", "golden", name)
		if *update {
			os.MkdirAll(filepath.Dir(golden), 0o755)
			os.WriteFile(golden, out.Bytes(), 0o644)
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%s: no golden file (run go test ./rules -run TestNoticeCorpus -update): %v", name, err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("%s: output differs from %s", name, golden)
		}
		p := filepath.Join(outDir, name)
		os.WriteFile(p, out.Bytes(), 0o644)
		outs = append(outs, p)
		t.Run(name, func(t *testing.T) { checkTransformed(t, name, raw, out.Bytes(), res) })
	}
	// The independent parser sees the same structure.
	inViews := pyLeaves(t, files...)
	outViews := pyLeaves(t, outs...)
	for i, in := range files {
		name := filepath.Base(in)
		iv, ov := inViews[i], outViews[i]
		if len(ov.Defects) > len(iv.Defects) {
			t.Errorf("%s: Python finds new defects %v (input had %v)", name, ov.Defects, iv.Defects)
		}
		if iv.Subject != ov.Subject {
			t.Errorf("%s: subject %q became %q", name, iv.Subject, ov.Subject)
		}
		inAtt := map[string]bool{}
		for _, l := range iv.Parts {
			if !isBody(l) {
				inAtt[l.SHA256] = true
			}
		}
		outAtt := map[string]bool{}
		noticed := false
		for _, l := range ov.Parts {
			if isBody(l) || (l.Type == "text/plain" && strings.Contains(l.Text, "Notice of Confidentiality")) {
				if strings.Contains(textutil.OneLine(l.Text), "Notice of Confidentiality") {
					noticed = true
				}
				continue
			}
			outAtt[l.SHA256] = true
		}
		for h := range inAtt {
			if !outAtt[h] {
				t.Errorf("%s: Python sees an attachment changed or lost (sha256 %s)", name, h[:12])
			}
		}
		if !noticed && name != "pgp-encrypted.eml" {
			t.Errorf("%s: Python finds no notice in any body text", name)
		}
	}
}

func checkTransformed(t *testing.T, name string, in, out []byte, res *transformResult) {
	inLeaves := goLeaves(t, in)
	outLeaves := goLeaves(t, out)
	if bytes.Contains(out, []byte("\nBcc:")) || bytes.HasPrefix(out, []byte("Bcc:")) {
		t.Error("a Bcc header reached the output")
	}
	if bytes.Count(out, []byte("\r")) != bytes.Count(out, []byte("\r\n")) || bytes.Count(out, []byte("\n")) != bytes.Count(out, []byte("\r\n")) {
		t.Error("output has bare CR or LF")
	}
	for _, line := range strings.Split(string(out), "\r\n") {
		if len(line) > 998 {
			t.Errorf("output has a line of %d octets", len(line))
		}
	}
	// Every non-content header is unchanged, byte for byte.
	inHead, _, _ := strings.Cut(string(in), "\r\n\r\n")
	outHead, _, _ := strings.Cut(string(out), "\r\n\r\n")
	for _, f := range unfoldFields(inHead) {
		k := strings.ToLower(f[:strings.IndexByte(f, ':')])
		if strings.HasPrefix(k, "content-") || k == "bcc" || k == "mime-version" {
			continue
		}
		if !strings.Contains(outHead, f) {
			t.Errorf("header field changed or lost: %q", f)
		}
	}
	// Attachments and protected parts are byte for byte the same.
	att := map[string]bool{}
	for _, l := range inLeaves {
		if !isBody(l) || res.protected != "" {
			att[l.SHA256] = true
		}
	}
	for _, l := range outLeaves {
		delete(att, l.SHA256)
	}
	if len(att) > 0 {
		t.Errorf("%d attachment(s) or protected part(s) changed or lost", len(att))
	}
	if res.protected == "encrypted" {
		if !bytes.Equal(in[bytes.Index(in, []byte("\r\n\r\n")):], out[bytes.Index(out, []byte("\r\n\r\n")):]) {
			t.Error("an encrypted message's body was altered")
		}
		return
	}
	if res.protected == "signed" {
		// The signed part is untouched; the notice is a part of its own.
		if !bytes.Contains(out, []byte("Notice of Confidentiality")) || !strings.Contains(string(out), "multipart/mixed") {
			t.Error("a signed message was not wrapped with a notice part")
		}
		return
	}
	// The notice is in every body text, exactly once.
	bodies := 0
	for _, l := range outLeaves {
		if !isBody(l) {
			continue
		}
		bodies++
		text := textutil.OneLine(stripTags(l.Text))
		if c := strings.Count(text, textutil.OneLine(testNotice)); c != 1 {
			t.Errorf("a %s body has the notice %d times:\n%s", l.Type, c, l.Text)
		}
	}
	if bodies == 0 {
		t.Error("no body text in the output")
	}
}

func unfoldFields(head string) []string {
	var fields []string
	for _, line := range strings.Split(head, "\r\n") {
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && len(fields) > 0 {
			fields[len(fields)-1] += "\r\n" + line
			continue
		}
		fields = append(fields, line)
	}
	return fields
}

func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
			b.WriteRune(' ')
		case r == '>':
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return strings.NewReplacer("&#8211;", "–").Replace(b.String())
}

func nested(depth int) string {
	var b strings.Builder
	b.WriteString("From: therapist@practice.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n")
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\ndeep inside\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

func manyParts(n int) string {
	var b strings.Builder
	b.WriteString("From: therapist@practice.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "--x\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	b.WriteString("--x--\r\n")
	return b.String()
}

// TestMalformedMIME: structures that cannot be transformed safely are
// refused with a reason; odd but harmless ones pass. Never a panic.
func TestMalformedMIME(t *testing.T) {
	n := newNoticeText(testNotice)
	tests := []struct {
		name   string
		msg    string
		refuse string // part of the reason; "" means it must pass
	}{
		{"nested 101 deep", nested(101), "nested more than 100"},
		{"nested 100 deep", nested(99), ""},
		{"nested 20,000 deep", nested(20000), "nested more than 100"},
		{"1001 parts", manyParts(1001), "more than 1000 parts"},
		{"1000 parts", manyParts(999), ""},
		{"no boundary parameter", "From: a@b.example\r\nContent-Type: multipart/mixed\r\n\r\nx\r\n", "no boundary"},
		{"boundary never found", "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\njust text\r\n", "cannot be told apart"},
		{"bad base64 in the body text", "From: a@b.example\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64***\r\n", "base64 encoding is damaged"},
		{"bad base64 in an attachment", "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nhi\r\n--q\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--q--\r\n", ""},
		{"unknown charset", "From: a@b.example\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nqapla'\r\n", ""},
		{"unknown transfer encoding", "From: a@b.example\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n<p>x</p>\r\n", "transfer encoding nobody can read"},
		{"garbled Content-Type", "From: a@b.example\r\nContent-Type: ;;;===\r\n\r\nbody\r\n", ""},
		{"no header at all", "\r\nonly a body\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			var out bytes.Buffer
			_, err := transformNotice(&out, strings.NewReader(tt.msg), n)
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v", d)
			}
			var me *mimeError
			switch {
			case tt.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refuse != "" && (!errors.As(err, &me) || !strings.Contains(err.Error(), tt.refuse)):
				t.Fatalf("got %v, want a refusal saying %q", err, tt.refuse)
			case tt.refuse == "" && !bytes.Contains(out.Bytes(), []byte("Notice of Confidentiality")):
				t.Fatalf("no notice in:\n%s", out.String())
			}
		})
	}
}

// BenchmarkRefuseDeepNesting: the time a 20,000-deep message takes to be
// refused (TestMalformedMIME only bounds it loosely).
func BenchmarkRefuseDeepNesting(b *testing.B) {
	msg := nested(20000)
	n := newNoticeText(testNotice)
	for i := 0; i < b.N; i++ {
		transformNotice(&bytes.Buffer{}, strings.NewReader(msg), n)
	}
}

// FuzzNotice: the transform never panics, never loses an attachment, and
// what it writes always parses again.
func FuzzNotice(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*.eml"))
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte(nested(5)))
	f.Add([]byte(manyParts(3)))
	n := newNoticeText(testNotice)
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		res, err := transformNotice(&out, bytes.NewReader(in), n)
		if err != nil {
			return
		}
		inAtt := attachmentsOf(in)
		if inAtt == nil {
			return // the input itself does not parse: nothing to compare
		}
		outAtt := attachmentsOf(out.Bytes())
		if outAtt == nil {
			t.Fatalf("output does not parse:\n%q", out.Bytes())
		}
		for h := range inAtt {
			if !outAtt[h] && res.protected == "" {
				t.Fatalf("an attachment was lost or changed")
			}
		}
	})
}

// attachmentsOf lists the sha256 of every non-body leaf, or nil when the
// message cannot be parsed.
func attachmentsOf(raw []byte) map[string]bool {
	m, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) {
		return nil
	}
	out := map[string]bool{}
	err = m.Walk(func(path []int, e *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return err
		}
		if e.MultipartReader() != nil {
			return nil
		}
		mt, _, _ := e.Header.ContentType()
		disp, _, _ := e.Header.ContentDisposition()
		if (mt == "text/plain" || mt == "text/html") && disp != "attachment" {
			return nil
		}
		b, err := io.ReadAll(e.Body)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[hex.EncodeToString(sum[:])] = true
		return nil
	})
	if err != nil {
		return nil
	}
	return out
}

// BenchmarkNoticeLargeText: a large plain text body.
func BenchmarkNoticeLargeText(b *testing.B) {
	line := strings.Repeat("All work and no play makes a dull message. ", 2) + "\r\n"
	body := strings.Repeat(line, (8<<20)/len(line))
	msg := "From: a@practice.example\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
	n := newNoticeText(testNotice)
	b.SetBytes(int64(len(msg)))
	for i := 0; i < b.N; i++ {
		if _, err := transformNotice(io.Discard, strings.NewReader(msg), n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNoticeAttachment: a short text and a large base64 attachment,
// copied through.
func BenchmarkNoticeAttachment(b *testing.B) {
	att := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, (12<<20)/4))
	var lines strings.Builder
	for i := 0; i < len(att); i += 76 {
		lines.WriteString(att[i:min(i+76, len(att))] + "\r\n")
	}
	msg := "From: a@practice.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + lines.String() + "--b--\r\n"
	n := newNoticeText(testNotice)
	b.SetBytes(int64(len(msg)))
	for i := 0; i < b.N; i++ {
		if _, err := transformNotice(io.Discard, strings.NewReader(msg), n); err != nil {
			b.Fatal(err)
		}
	}
}
