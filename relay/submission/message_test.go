package submission

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-message/textproto"
)

// refStrict is the byte-by-byte reading of the same rules strictReader
// checks line by line: the reference it is fuzzed against.
func refStrict(data []byte) error {
	prevCR, lineLen, inBody := false, 0, false
	for _, b := range data {
		if prevCR {
			if b != '\n' {
				return replyBareCR
			}
			if lineLen == 0 {
				inBody = true
			}
			prevCR, lineLen = false, 0
			continue
		}
		switch b {
		case '\r':
			prevCR = true
		case '\n':
			return replyBareLF
		case 0:
			return replyNUL
		default:
			lineLen++
			if (!inBody && lineLen > maxLineOctets) || lineLen > maxBodyLineOctets {
				return replyLongLine
			}
		}
	}
	if prevCR {
		return replyBareCR
	}
	return nil
}

// errClass groups the refusals: a CR at a line's end followed by something
// else may be found one byte apart by the two readers, same reply.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, replyBareCR), errors.Is(err, replyBareLF), errors.Is(err, replyNUL):
		return "smuggling-or-nul"
	case errors.Is(err, replyLongLine), errors.Is(err, replyLongBodyLine):
		return "long"
	}
	return err.Error()
}

func strictAll(data []byte, oneByte bool) error {
	var r io.Reader = bytes.NewReader(data)
	if oneByte {
		r = iotest.OneByteReader(r)
	}
	_, err := io.Copy(io.Discard, &strictReader{r: r})
	return err
}

func FuzzStrictReader(f *testing.F) {
	for _, s := range []string{"", "a\r\n", "a\nb", "a\rb\r\n", "x\x00\r\n", "ab\r", "\r\n\r\n.\r\n",
		string(bytes.Repeat([]byte("x"), 998)) + "\r\n", string(bytes.Repeat([]byte("x"), 999)) + "\r\n",
		"S: x\r\n\r\n" + string(bytes.Repeat([]byte("x"), 999)) + "\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want := errClass(refStrict(data))
		for _, one := range []bool{false, true} {
			if got := errClass(strictAll(data, one)); got != want && !(want != "ok" && got != "ok" && (want == "long" || got == "long")) {
				t.Fatalf("one byte at a time %v: %s, the reference says %s for %q", one, got, want, data)
			}
		}
	})
}

// FuzzData feeds arbitrary message bytes through the DATA checks and the
// header preparation: they must never panic, and whatever they let through
// has no bare CR or LF and no NUL.
func FuzzData(f *testing.F) {
	for _, seed := range []string{
		"From: therapist@practice.example\r\nSubject: hi\r\n\r\nbody\r\n",
		"From: therapist@practice.example\r\n\r\nx\n.\nMAIL FROM:<a@b.c>\r\n",
		"From: =?utf-8?q?Th=C3=A9rapist?= <therapist@practice.example>\r\nX-Sealpost-X: 1\r\n\r\n",
		"Subject: no from\r\n\r\n",
		"From: a\r\n \r\n\tfolded\r\n\r\n",
		"\r\n\r\n",
		"From: therapist@practice.example\r\nSender: other@x.example\r\n\r\n",
		"From: therapist@practice.example\r\na\rb\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	acct := &Account{Username: "therapist", normalized: map[string]bool{"therapist@practice.example": true}}
	f.Fuzz(func(t *testing.T, data []byte) {
		strict := &strictReader{r: bytes.NewReader(data)}
		br := bufio.NewReaderSize(strict, 4096)
		raw, err := readHeaderSection(br)
		if err != nil {
			return
		}
		hdr, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		hdr, err = prepareHeader(hdr, acct, "relay.test", "0123456789abc", time.Unix(0, 0))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := textproto.WriteHeader(&out, hdr); err != nil {
			t.Fatalf("writing an accepted header: %v", err)
		}
		if _, err := io.Copy(&out, br); err != nil {
			return
		}
		b := out.Bytes()
		if bytes.IndexByte(b, 0) >= 0 {
			t.Fatal("NUL passed")
		}
		if bytes.Count(b, []byte("\r")) != bytes.Count(b, []byte("\r\n")) || bytes.Count(b, []byte("\n")) != bytes.Count(b, []byte("\r\n")) {
			t.Fatalf("bare CR or LF passed: %q", b)
		}
		if strings.Contains(strings.ToLower(string(raw)), "x-sealpost-") && bytes.Contains(bytes.ToLower(b), []byte("x-sealpost-")) {
			t.Fatal("a private header passed")
		}
	})
}

// TestBodyLineLimit: body lines may be long (the rules re-encode them) but
// not without end.
func TestBodyLineLimit(t *testing.T) {
	r := startServer(t, serverOpts{maxBytes: 4 << 20})
	c := r.login(t)
	err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", strings.Repeat("y", maxBodyLineOctets+1)))
	if got := smtpCode(err); got != "554 5.6.0" || !strings.Contains(err.Error(), "1 MiB") {
		t.Fatalf("a 1 MiB line: %s (%v), want 554 5.6.0", got, err)
	}
}
