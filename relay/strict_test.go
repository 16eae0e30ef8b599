package relay

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// refStrict is the byte-by-byte reading of the same rules strictReader
// checks line by line: the reference it is fuzzed against.
func refStrict(data []byte) error {
	prevCR, lineLen, inBody := false, 0, false
	for _, b := range data {
		if prevCR {
			if b != '\n' {
				return errBareCR
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
			return errBareLF
		case 0:
			return errNUL
		default:
			lineLen++
			if (!inBody && lineLen > maxLineOctets) || lineLen > maxBodyLineOctets {
				return errLongLine
			}
		}
	}
	if prevCR {
		return errBareCR
	}
	return nil
}

// errClass groups the refusals: a CR at a line's end followed by something
// else may be found one byte apart by the two readers, same reply.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errBareCR), errors.Is(err, errBareLF), errors.Is(err, errNUL):
		return "smuggling-or-nul"
	case errors.Is(err, errLongLine), errors.Is(err, errLongBodyLine):
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
