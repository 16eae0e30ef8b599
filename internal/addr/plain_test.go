package addr

import (
	"errors"
	"strings"
	"testing"
)

// TestStrict: what a person typed is taken only when normalising it changes
// nothing but A-Z case and a valid IDN written as its A-label; everything
// UTS #46 would map or drop is refused with the character named, in the
// domain and in the local part alike.
func TestStrict(t *testing.T) {
	tests := []struct {
		in   string
		want string // normalised form; "" when refused
		kind string // for a refusal: NotPlainError.Kind, or "invalid"
		char string // part of the description of the character
	}{
		{"anna@client.example", "anna@client.example", "", ""},
		{"Anna@CLIENT.Example", "anna@client.example", "", ""},
		{"Anna <anna@client.example>", "anna@client.example", "", ""},
		{"anna@bücher.example", "anna@xn--bcher-kva.example", "", ""},
		{"anna@xn--bcher-kva.example", "anna@xn--bcher-kva.example", "", ""},
		{"anna@faß.example", "anna@xn--fa-hia.example", "", ""},
		{"jörg+x@bücher.example", "jörg+x@xn--bcher-kva.example", "", ""},
		{"ünal@example.org", "ünal@example.org", "", ""},

		{"anna@\uff43lient.example", "", LookAlike, `U+FF43, a look-alike of "c"`},
		{"anna@\u2102lient.example", "", LookAlike, `U+2102, a look-alike of "c"`},
		{"anna@client\u3002example", "", LookAlike, `U+3002, a look-alike of "."`},
		{"anna@cli\u200bent.example", "", Invisible, "U+200B, an invisible character"},
		{"anna@cli\u00adent.example", "", Invisible, "U+00AD"},
		{"anna@cli\u200dent.example", "", Invisible, "U+200D"},
		{"anna@client.example\u200b", "", Invisible, "U+200B"},
		{"anna@cli\u202eent.example", "", Invisible, "U+202E"},
		{"anna@B\u00dcCHER.example", "", Changed, "U+00DC, which becomes U+00FC"},
		{"anna@bu\u0308cher.example", "", Uncomposed, "U+0308"},
		{"\uff41nna@client.example", "", LookAlike, `U+FF41, a look-alike of "a"`},
		{"\u212aim@example.org", "", LookAlike, `U+212A, a look-alike of "k"`},
		{"an\u200bna@client.example", "", Invisible, "U+200B"},
		{"an\u200cna@client.example", "", Invisible, "U+200C"},
		{"anna\ufe0f@client.example", "", Invisible, "U+FE0F"},
		{"\ufb01@client.example", "", LookAlike, `U+FB01, a look-alike of "fi"`},
		{"\u00dcnal@example.org", "", Changed, "U+00DC"},
		{"u\u0308nal@example.org", "", Uncomposed, "U+0308"},
		{"a\ue000@client.example", "", Disallowed, "U+E000"},
		{"a\u00a0b@client.example", "", LookAlike, "U+00A0"},

		{"u%ext@relay.example", "", "invalid", ""},
		{"anna@", "", "invalid", ""},
	}
	for _, tt := range tests {
		got, err := Strict(tt.in)
		var np *NotPlainError
		switch {
		case tt.want != "":
			if err != nil || got != tt.want {
				t.Errorf("Strict(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		case tt.kind == "invalid":
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Strict(%q) = %q, %v; want ErrInvalid", tt.in, got, err)
			}
		case !errors.As(err, &np) || !errors.Is(err, ErrNotPlain):
			t.Errorf("Strict(%q) = %q, %v; want a NotPlainError", tt.in, got, err)
		case np.Kind != tt.kind || !strings.Contains(np.Char(), tt.char) || np.Address != tt.in:
			t.Errorf("Strict(%q): %s %q (%q), want %s %q", tt.in, np.Kind, np.Char(), np.Address, tt.kind, tt.char)
		}
		// Whatever Strict takes, Normalize takes unchanged but for case
		// and the A-label: nothing else was mapped away.
		if err == nil {
			if n, _ := Normalize(tt.in); n != got {
				t.Errorf("Strict(%q) = %q but Normalize gives %q", tt.in, got, n)
			}
		}
	}
}

func TestEscape(t *testing.T) {
	if got := Escape("an\u200bna@b\u00fccher.example"); got != "an[U+200B]na@b[U+00FC]cher.example" {
		t.Errorf("Escape = %q", got)
	}
}

func FuzzStrict(f *testing.F) {
	for _, s := range []string{"jane@example.org", "x@bücher.de", "\uff41@b.c", "a@b\u200b.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Strict(s)
		if err != nil {
			return
		}
		// What is taken is already in its final form: delivering it is
		// delivering what was decided.
		if again, err := Strict(n); err != nil || again != n {
			t.Fatalf("Strict(%q) = %q, then %q, %v", s, n, again, err)
		}
		local, _, _ := splitRaw(s)
		if asciiLower(local) != n[:strings.LastIndexByte(n, '@')] {
			t.Fatalf("Strict(%q) = %q changed the local part beyond A-Z", s, n)
		}
	})
}
