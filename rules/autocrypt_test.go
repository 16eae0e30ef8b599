package rules

import (
	"context"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/record"
)

// fakeAutocrypt offers a made-up key for any address.
type fakeAutocrypt struct{}

func (fakeAutocrypt) AutocryptHeader(address string) string {
	return "addr=" + address + "; keydata=\r\n UFJBQ1RJQ0UgS0VZ"
}

// TestAutocryptOnCopiesThatLeave: every copy that leaves the practice
// (clear to a client or a professional, encrypted, sealed) carries one
// Autocrypt header for the From address; mail only to colleagues carries
// none; a sender's own Autocrypt header is kept, never doubled.
func TestAutocryptOnCopiesThatLeave(t *testing.T) {
	tp := newTestPolicy(t)
	tp.Policy.autocrypt = fakeAutocrypt{}
	tp.consent(t, "consented@client.example", "2026-01-10", "")
	tp.passphrase(t, "sealed@client.example", "first client passphrase")
	tp.keys.keys["key@client.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "AAAA"}
	const want = "Autocrypt: addr=therapist@practice.example; keydata=\r\n UFJBQ1RJQ0UgS0VZ\r\n"
	tests := []struct {
		name   string
		rcpts  []string
		header string // added to the message's own
		offers int    // Autocrypt headers in each copy, and in the plain one
	}{
		{"colleagues only", []string{"colleague@practice.example"}, "", 0},
		{"a consented client", []string{"consented@client.example", "colleague@practice.example"}, "", 1},
		{"a key holder", []string{"key@client.example"}, "", 1},
		{"a sealed client", []string{"sealed@client.example"}, "", 1},
		{"the sender's own key", []string{"consented@client.example"}, "Autocrypt: addr=therapist@practice.example; keydata=T1dO\r\n", 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &memSink{}
			msg := "From: Maria <Therapist@Practice.example>\r\nTo: " + strings.Join(tt.rcpts, ", ") + "\r\nSubject: s\r\n" + tt.header + "\r\nHello.\r\n"
			res, err := tp.Apply(context.Background(), Submission{ID: string(rune('a' + i)), Decisions: tp.decideAll(t, tt.rcpts...)}, strings.NewReader(msg), sink)
			if err != nil {
				t.Fatal(err)
			}
			names := []string{res.Plain}
			for _, c := range res.Copies {
				names = append(names, c.Name)
			}
			for _, name := range names {
				// The stub sealer's output holds the plain copy after its own header.
				copyText, _, _ := strings.Cut(sink.files[name].String(), "SEALED WITH")
				if n := strings.Count(strings.ToLower(copyText), "autocrypt:"); n != tt.offers {
					t.Errorf("%s: %d Autocrypt headers, want %d:\n%s", name, n, tt.offers, copyText)
				}
				if tt.offers == 1 && tt.header == "" && !strings.Contains(sink.files[name].String(), want) {
					t.Errorf("%s: no Autocrypt header for the From address:\n%s", name, copyText)
				}
			}
			if tt.header != "" && !strings.Contains(sink.files[res.Plain].String(), tt.header) {
				t.Errorf("the sender's own Autocrypt header was not kept")
			}
			for _, c := range res.Copies {
				if c.Protection == record.Sealed && !strings.HasPrefix(sink.files[c.Name].String(), want) {
					t.Errorf("the sealed copy does not begin with the header:\n%s", sink.files[c.Name].String())
				}
			}
		})
	}
}
