package sealed

import (
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/xdg-go/stringprep"
)

// The EFF's large word list for passphrases (CC BY 3.0 US, Electronic
// Frontier Foundation; see NOTICE), kept as published: five dice digits, a
// tab and a word on each line.
//
//go:embed eff_large_wordlist.txt
var effWordList string

// Passphrase limits: ISO 32000-2 (7.6.4.3.3) truncates a password to 127
// bytes after SASLprep, so a longer one would open with its first 127 bytes;
// it is refused instead. Twelve characters is the shortest a person is asked
// to choose.
const (
	MinPassphraseChars = 12
	MaxPassphraseBytes = 127
	generatedWords     = 6
)

var (
	wordsOnce sync.Once
	words     []string
	wordSet   map[string]bool
)

func loadWords() {
	wordsOnce.Do(func() {
		lines := strings.Split(strings.TrimSpace(effWordList), "\n")
		words = make([]string, 0, len(lines))
		wordSet = make(map[string]bool, len(lines))
		for _, l := range lines {
			_, w, ok := strings.Cut(l, "\t")
			if !ok {
				panic("sealed: the embedded word list has a line without a tab")
			}
			words = append(words, w)
			wordSet[w] = true
		}
	})
}

// CheckPassphrase prepares a passphrase as PDF 2.0's security handler
// requires (SASLprep, RFC 4013: spaces of every kind become the ASCII
// space, compatibility characters are normalised with NFKC) and checks that
// it is fit to protect a client's mail. Spaces at either end are dropped:
// nobody sees them on a card. The error says, in words an admin
// understands, what is wrong; it never repeats the passphrase.
func CheckPassphrase(p string) (string, error) {
	if !utf8.ValidString(p) {
		return "", errors.New("the passphrase is not valid text (UTF-8)")
	}
	prepared, err := stringprep.SASLprep.Prepare(p)
	if err != nil {
		return "", prepError(err)
	}
	prepared = strings.TrimSpace(prepared)
	n := utf8.RuneCountInString(prepared)
	switch {
	case n < MinPassphraseChars:
		return "", fmt.Errorf("the passphrase is shorter than %d characters (it has %d)", MinPassphraseChars, n)
	case len(prepared) > MaxPassphraseBytes:
		return "", fmt.Errorf("the passphrase is longer than %d bytes once prepared (it has %d); PDF readers would use only its beginning",
			MaxPassphraseBytes, len(prepared))
	}
	loadWords()
	if wordSet[strings.ToLower(prepared)] {
		return "", errors.New("the passphrase is a single word of the well-known word list sealpost generates passphrases from; use several words")
	}
	return prepared, nil
}

// prepError names what SASLprep refused without showing the passphrase:
// the kind of character and its code point only.
func prepError(err error) error {
	var se stringprep.Error
	if errors.As(err, &se) {
		switch {
		case unicode.IsControl(se.Rune):
			return fmt.Errorf("the passphrase contains a control character (U+%04X) that cannot be typed into a PDF reader", se.Rune)
		case strings.Contains(se.Msg, "BiDi"):
			return errors.New("the passphrase mixes right-to-left and left-to-right writing in a way PDF readers refuse")
		}
		return fmt.Errorf("the passphrase contains a character PDF readers refuse in passwords (U+%04X)", se.Rune)
	}
	return errors.New("the passphrase cannot be prepared for a PDF")
}

// GeneratePassphrase makes six words from the EFF's large word list, chosen
// with crypto/rand (7,776 words: about 77.5 bits), separated by single
// spaces. It is already prepared: lower-case ASCII letters, hyphens and
// spaces.
func GeneratePassphrase() (string, error) {
	loadWords()
	n := big.NewInt(int64(len(words)))
	chosen := make([]string, generatedWords)
	for i := range chosen {
		k, err := rand.Int(rand.Reader, n)
		if err != nil {
			return "", fmt.Errorf("sealed: generate a passphrase: %w", err)
		}
		chosen[i] = words[k.Int64()]
	}
	return strings.Join(chosen, " "), nil
}
