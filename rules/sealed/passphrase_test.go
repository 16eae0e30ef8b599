package sealed

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckPassphrase(t *testing.T) {
	tests := []struct {
		name, in, want string
		err            string // a part of the error's text; "" for none
	}{
		{"six words", "correct horse battery staple lamp mouse", "correct horse battery staple lamp mouse", ""},
		{"short", "tiny secret", "", "shorter than 12 characters"},
		{"twelve characters exactly", "abcdefghijk1", "abcdefghijk1", ""},
		{"eleven characters and spaces around", "   abcdefghijk   ", "", "shorter than 12 characters"},
		{"one word of the list", "abdominal", "", "shorter than 12"},
		{"one word of the list with spaces around", "        Abdominal        ", "", "shorter than 12"},
		{"too long", strings.Repeat("word ", 26), "", "longer than 127 bytes"},
		{"127 bytes once prepared", strings.Repeat("é", 63) + "a", strings.Repeat("é", 63) + "a", ""},
		{"128 bytes once prepared", strings.Repeat("é", 64), "", "longer than 127 bytes"},
		{"non-ASCII spaces mapped", "correct\u00a0horse\u2003battery\u3000staple", "correct horse battery staple", ""},
		{"NFKC", "ﬁve ｆｕｌｌｗｉｄｔｈ words", "five fullwidth words", ""},
		{"composed accents", "cafe\u0301 au lait s'il vous plait", "café au lait s'il vous plait", ""},
		{"spaces at the ends dropped", "  correct horse battery  ", "correct horse battery", ""},
		{"control character", "correct horse\x07battery", "", "control character"},
		{"invalid UTF-8", "correct horse \xff battery", "", "not valid text"},
		{"right-to-left mixed", "שלום hello world abc", "", "right-to-left"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CheckPassphrase(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("CheckPassphrase(%q) = %q, %v; want an error saying %q", tc.in, got, err, tc.err)
				}
				if strings.Contains(err.Error(), strings.TrimSpace(tc.in)) {
					t.Fatalf("the error repeats the passphrase: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("CheckPassphrase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			again, err := CheckPassphrase(got)
			if err != nil || again != got {
				t.Fatalf("preparing twice changes it: %q -> %q, %v", got, again, err)
			}
		})
	}
}

func TestCheckPassphraseRefusesEveryListWordAlone(t *testing.T) {
	loadWords()
	if len(words) != 7776 || len(wordSet) != 7776 {
		t.Fatalf("the word list has %d words (%d different), want 7776", len(words), len(wordSet))
	}
	for _, w := range words {
		padded := "      " + strings.ToUpper(w) + "      "
		if _, err := CheckPassphrase(padded); err == nil {
			t.Fatalf("%q was accepted", padded)
		}
	}
	// A word that is twelve characters long would be refused as a list
	// word rather than as short: the list has none, but the check holds.
	wordSet["abcdefghijklmn"] = true
	defer delete(wordSet, "abcdefghijklmn")
	if _, err := CheckPassphrase("ABCDEFGHIJKLMN"); err == nil || !strings.Contains(err.Error(), "single word") {
		t.Fatalf("a list word of 14 characters: %v", err)
	}
}

func TestGeneratePassphrase(t *testing.T) {
	loadWords()
	seen := map[string]bool{}
	for range 20 {
		p, err := GeneratePassphrase()
		if err != nil {
			t.Fatal(err)
		}
		ws := strings.Split(p, " ")
		if len(ws) != 6 {
			t.Fatalf("%q has %d words, want 6", p, len(ws))
		}
		for _, w := range ws {
			if !wordSet[w] {
				t.Fatalf("%q: %q is not a word of the list", p, w)
			}
		}
		prepared, err := CheckPassphrase(p)
		if err != nil || prepared != p {
			t.Fatalf("CheckPassphrase(%q) = %q, %v", p, prepared, err)
		}
		if len(p) > MaxPassphraseBytes || utf8.RuneCountInString(p) < MinPassphraseChars {
			t.Fatalf("%q is outside the limits", p)
		}
		if seen[p] {
			t.Fatalf("%q generated twice", p)
		}
		seen[p] = true
	}
}
