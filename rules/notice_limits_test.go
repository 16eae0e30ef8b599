package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
)

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

// A 20,000-deep message is refused in well under 100 ms (a benchmark keeps
// the number honest; the test above only bounds it loosely).
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

// BenchmarkNoticeLargeText: a large plain text body (goal ≥ 200 MB/s).
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
// copied through (goal ≥ 200 MB/s).
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
