package sealed

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzSeal: any message, however damaged, is sealed or refused with
// ErrTooLarge or a *MalformedError; nothing panics, a refusal writes
// nothing, and what is sealed is a PDF 2.0 file. The seed corpus is in
// testdata/fuzz/FuzzSeal.
func FuzzSeal(f *testing.F) {
	f.Add(mixedMessage("Hello Zoë, Καλημέρα.\r\n", attachment{"a.bin", []byte{0, 1, 2}}))
	o := testOptions()
	o.MaxBytes = 256 << 10
	f.Fuzz(func(t *testing.T, raw []byte) {
		var out bytes.Buffer
		res, err := Seal(&out, bytes.NewReader(raw), o)
		if err != nil {
			var me *MalformedError
			if !errors.As(err, &me) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Seal: %v", err)
			}
			if out.Len() != 0 {
				t.Fatalf("a refused message wrote %d bytes", out.Len())
			}
			return
		}
		if res.PDFSize == 0 || !bytes.Contains(out.Bytes(), []byte("filename=\"message.pdf\"")) {
			t.Fatalf("sealed, but no PDF: %+v", res)
		}
	})
}

// FuzzCheckPassphrase: what CheckPassphrase accepts is prepared (preparing
// it again changes nothing), valid UTF-8, within the limits, and accepted
// by Seal. The seed corpus is in testdata/fuzz/FuzzCheckPassphrase.
func FuzzCheckPassphrase(f *testing.F) {
	f.Add("correct horse battery staple")
	f.Fuzz(func(t *testing.T, p string) {
		prepared, err := CheckPassphrase(p)
		if err != nil {
			if prepared != "" {
				t.Fatalf("an error and a passphrase: %q, %v", prepared, err)
			}
			return
		}
		if !utf8.ValidString(prepared) || len(prepared) > MaxPassphraseBytes ||
			utf8.RuneCountInString(prepared) < MinPassphraseChars || strings.TrimSpace(prepared) != prepared {
			t.Fatalf("CheckPassphrase(%q) = %q: outside the limits", p, prepared)
		}
		again, err := CheckPassphrase(prepared)
		if err != nil || again != prepared {
			t.Fatalf("preparing %q again gives %q, %v", prepared, again, err)
		}
		if !isPrepared(prepared) {
			t.Fatalf("Seal would refuse the prepared passphrase %q", prepared)
		}
	})
}
