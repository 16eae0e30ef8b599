package addr

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"jane@Example.ORG", "jane@example.org"},
		{"<Jane@example.org>", "jane@example.org"},
		{"Jane Doe <jane@example.org>", "jane@example.org"},
		{`"Doe, Jane" <jane@example.org>`, "jane@example.org"},
		{"jane+therapy@example.org", "jane+therapy@example.org"},
		{"anna@bücher.example", "anna@xn--bcher-kva.example"},
		{"anna@XN--BCHER-KVA.example", "anna@xn--bcher-kva.example"},
		// Only A-Z fold: the Kelvin sign must not turn into kim's address,
		// nor one non-ASCII mailbox into another.
		{"\u212Aim@example.org", "\u212Aim@example.org"},
		{"Ünal@example.org", "Ünal@example.org"},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if err != nil {
			t.Errorf("Normalize(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// The open-relay probes and malformed paths of the bad-input catalogue: none may
// parse into an address we would relay to.
func TestNormalizeRefuses(t *testing.T) {
	for _, in := range []string{
		"", "jane", "@example.org", "jane@", "u%ext@relay.example", `"u@ext"@relay.example`,
		"u@ext@relay.example", "@relay.example:u@ext.example", "ext!u@relay.example",
		"u@[127.0.0.1]", "u@example.org.", "u@localhost", "ja\x00ne@example.org",
		"ja\rne@example.org", "ja\nne@example.org", ".jane@example.org", "ja..ne@example.org",
		strings.Repeat("a", 250) + "@example.org", "\xff@example.org",
	} {
		if got, err := Normalize(in); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("Normalize(%q) = %q, %v; want ErrInvalid", in, got, err)
		}
	}
}

func TestRedactorHidesAndMatches(t *testing.T) {
	r, err := NewRedactor([]byte("0123456789abcdef0123"))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Hash("Client.Name@Example.org")
	if strings.Contains(strings.ToLower(h), "client") || strings.Contains(h, "example") {
		t.Fatalf("hash %q reveals the address", h)
	}
	if h != r.Hash("client.name@example.org") {
		t.Fatal("the same address in another case hashes differently")
	}
	if h == r.Hash("other@example.org") {
		t.Fatal("different addresses hash alike")
	}
	other, _ := NewRedactor([]byte("another key of 16+ bytes"))
	if other.Hash("client.name@example.org") == h {
		t.Fatal("hash does not depend on the key")
	}
	if _, err := NewRedactor(nil); err == nil {
		t.Fatal("empty key accepted")
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"jane@example.org", "A <b@c.de>", "u%x@y.z", "\"q\"@x.y", "x@bücher.de"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Normalize(s)
		if err != nil {
			return
		}
		again, err := Normalize(n)
		if err != nil || again != n {
			t.Fatalf("Normalize(%q) = %q is not stable: %q, %v", s, n, again, err)
		}
		if strings.ContainsAny(n, "\r\n\x00 <>") {
			t.Fatalf("Normalize(%q) = %q holds forbidden characters", s, n)
		}
	})
}

func TestRedactText(t *testing.T) {
	hash := func(s string) string { return "h:" + fmt.Sprint(len(s)) }
	tests := []struct{ in, want string }{
		{"250 2.0.0 Ok: queued as 4XyZ", "250 2.0.0 Ok: queued as 4XyZ"},
		{"550 5.1.1 <kim@client.example>: Recipient address rejected", "550 5.1.1 <h:18>: Recipient address rejected"},
		{"452 4.2.2 mailbox full: Kim.Lee+x@Client.Example (quota)", "452 4.2.2 mailbox full: h:24 (quota)"},
		{"550 a@b.example, c@d.example refused", "550 h:11, h:11 refused"},
	}
	for _, tt := range tests {
		if got := RedactText(tt.in, hash); got != tt.want {
			t.Errorf("RedactText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
