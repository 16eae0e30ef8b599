package sealed

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/internal/testutil"
)

const testCrisis = "If you are in crisis, call or text 988 (Suicide & Crisis Lifeline) or text HOME to 741741 (Crisis Text Line). In an emergency call 911."

func TestCardRefusesAnUnpreparedPassphrase(t *testing.T) {
	for _, p := range []string{"", "ｆｕｌｌｗｉｄｔｈ passphrase"} {
		if err := Card(&bytes.Buffer{}, CardOptions{PracticeName: "P", Passphrase: p}); !errors.Is(err, errNotPrepared) {
			t.Errorf("passphrase %q: %v", p, err)
		}
	}
}

func TestCardRefusesWhatDoesNotFitOnAPage(t *testing.T) {
	err := Card(&bytes.Buffer{}, CardOptions{PracticeName: "P", Passphrase: "correct horse battery", Crisis: strings.Repeat("Call us. ", 600)})
	if err == nil || !strings.Contains(err.Error(), "one page") {
		t.Errorf("a crisis text of 600 sentences: %v", err)
	}
}

func TestCardSpelling(t *testing.T) {
	tests := []struct {
		passphrase string
		want       []string
	}{
		{"bazooka zookeeper slobbery unhook promoter founding",
			[]string{"Type it as one line: 6 words with one space between each, all in small letters.", "•  l is the small letter L (not the digit one)"}},
		{"Grüße aus Köln 10",
			[]string{"Type it as one line: 4 words with one space between each.", "Capital letters: G, K.",
				"•  ü is the latin small letter u with diaeresis", "•  ß is the latin small letter sharp s",
				"•  ö is the latin small letter o with diaeresis", "•  l is the small letter L (not the digit one)",
				"•  1 is the digit one", "•  0 is the digit zero"}},
		{"two  spaces here", []string{"Type it as one line, with the spaces exactly as shown (two in a row where there are two), all in small letters."}},
	}
	for _, tc := range tests {
		got := spelling(tc.passphrase)
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("spelling(%q) =\n%s\nwant\n%s", tc.passphrase, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
}

// TestCardReadByPrograms: the card is one unencrypted page whose text
// pdftotext finds whole, whose metadata names neither the client nor the
// passphrase, and which renders.
func TestCardReadByPrograms(t *testing.T) {
	testutil.RequireTools(t, "pdftotext", "pdfinfo", "qpdf", "mutool")
	dir := t.TempDir()
	passphrase, err := GeneratePassphrase()
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{"generated": passphrase, "accented": "Grüße Ωmega lIl10O-x"} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Card(&b, CardOptions{PracticeName: "Praxis Beispiel", Client: "Zoë Müller", Passphrase: p, Crisis: testCrisis}); err != nil {
				t.Fatal(err)
			}
			card := writeFile(t, dir, name+".pdf", b.Bytes())
			text := strings.Join(strings.Fields(run(t, true, "pdftotext", card, "-")), " ")
			for _, want := range []string{"Praxis Beispiel", "For Zoë Müller", p, "iPhone", "Android", "Windows", "Mac", "Preview",
				"save it to Files", "Acrobat Reader", testCrisis, "Never send the passphrase by e-mail"} {
				want = strings.Join(strings.Fields(want), " ")
				if !strings.Contains(text, want) {
					t.Errorf("pdftotext does not show %q:\n%s", want, text)
				}
			}
			info := strings.Join(strings.Fields(run(t, true, "pdfinfo", card)), " ")
			if !strings.Contains(info, "Pages: 1 ") || strings.Contains(info, "Zoë") || strings.Contains(info, strings.Fields(p)[0]) {
				t.Errorf("pdfinfo:\n%s", info)
			}
			if enc := run(t, true, "qpdf", "--show-encryption", card); !strings.Contains(enc, "not encrypted") {
				t.Errorf("qpdf --show-encryption: %s", enc)
			}
			img := filepath.Join(dir, name+".png")
			run(t, true, "mutool", "draw", "-r", "60", "-o", img, card, "1")
			if n, total := inkedPixels(t, img); n < total/100 {
				t.Errorf("the card renders blank: %d of %d pixels", n, total)
			}
		})
	}
}
