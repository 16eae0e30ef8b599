package archive

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

// TestClientAddresses: a client's name or chart id is found in the consent
// history the archive holds (any case), with every address ever recorded
// for them; an unknown name says what to give instead.
func TestClientAddresses(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	at := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	for i, ev := range []record.ConsentEvent{
		{Kind: record.ConsentGiven, Client: "Chart 17", Addresses: []string{"Anna@Client.Example"}, Evidence: "form"},
		{Kind: record.PassphraseSet, Client: "Chart 17", Addresses: []string{"anna.alt@client.example"}},
		{Kind: record.ConsentGiven, Client: "Chart 18", Addresses: []string{"ben@client.example"}, Evidence: "form"},
		{Kind: record.ConsentRevoked, Client: "chart 17", Addresses: []string{"anna@client.example"}, Reason: "asked"},
	} {
		ev.ID, ev.RecordedAt, ev.RecordedBy = int64(i+1), at.Add(time.Duration(i)*time.Hour), "admin"
		if err := a.RecordConsent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	for _, tt := range []struct{ name, want string }{
		{"Chart 17", "[anna.alt@client.example anna@client.example]"},
		{" chart 17 ", "[anna.alt@client.example anna@client.example]"},
		{"Chart 18", "[ben@client.example]"},
	} {
		got, err := ClientAddresses(ctx, f.dir, f.priv, tt.name)
		if err != nil || fmt.Sprint(got) != tt.want {
			t.Errorf("%q: %v %v, want %s", tt.name, got, err, tt.want)
		}
	}
	if _, err := ClientAddresses(ctx, f.dir, f.priv, "Chart 99"); err == nil || !strings.Contains(err.Error(), "give an address instead") {
		t.Errorf("an unknown client: %v", err)
	}
}
