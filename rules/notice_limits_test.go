package rules

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
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
		{"1001 parts", manyParts(1001), "more than 1000 MIME parts"},
		{"1000 parts", manyParts(999), ""},
		{"no boundary parameter", "From: a@b.example\r\nContent-Type: multipart/mixed\r\n\r\nx\r\n", "no boundary"},
		{"boundary never found", "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\njust text\r\n", "broken MIME structure"},
		{"bad base64 in the body text", "From: a@b.example\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64***\r\n", "broken base64"},
		{"bad base64 in an attachment", "From: a@b.example\r\nContent-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nhi\r\n--q\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--q--\r\n", ""},
		{"unknown charset", "From: a@b.example\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nqapla'\r\n", ""},
		{"unknown transfer encoding", "From: a@b.example\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n<p>x</p>\r\n", "unknown transfer encoding"},
		{"garbled Content-Type", "From: a@b.example\r\nContent-Type: ;;;===\r\n\r\nbody\r\n", ""},
		{"no header at all", "\r\nonly a body\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			var out bytes.Buffer
			_, err := transformNotice(&out, strings.NewReader(tt.msg), n, true)
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
		transformNotice(&bytes.Buffer{}, strings.NewReader(msg), n, false)
	}
}
