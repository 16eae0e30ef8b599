package rules

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSearchClientsByName: a search by name or chart id finds, page by
// page, exactly the clients whose name contains the text, whether few
// match (through the names' index) or most do (walking the addresses);
// a client recorded later is found too, also after the index's trigger
// was lost (as a migration of consent_events loses it); a name in capitals
// beyond ASCII is found as SQLite's lower() finds it (Ü stays Ü).
func TestSearchClientsByName(t *testing.T) {
	now := time.Now()
	const n = 1200
	r := clientRegistry(t, n, now)
	ctx := context.Background()
	names := map[string]string{}
	for i := range n {
		names[fmt.Sprintf("c%05d@client.example", i)] = fmt.Sprintf("client %d (ch-%d)", i, i)
	}
	add := func(address, name string) {
		t.Helper()
		csv := "address,name,signed,evidence,expires\n" + address + "," + name + ",2026-01-02,intake form,\n"
		if _, err := r.Import(ctx, strings.NewReader(csv), "admin"); err != nil {
			t.Fatal(err)
		}
		names[address] = asciiLower(name)
	}
	search := func(text string) []string {
		t.Helper()
		var got []string
		after := ""
		for {
			page, next, err := r.SearchClients(ctx, text, after, 50, now)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				got = append(got, e.Address)
			}
			if next == "" {
				return got
			}
			after = next
		}
	}
	check := func(when string, texts ...string) {
		t.Helper()
		for _, text := range texts {
			var want []string
			for a, name := range names {
				if strings.HasPrefix(a, text) || strings.Contains(name, text) {
					want = append(want, a)
				}
			}
			slices.Sort(want)
			if got := search(text); !slices.Equal(got, want) {
				t.Errorf("%s, %q: found %d %v..., want %d %v...", when, text, len(got), got[:min(3, len(got))], len(want), want[:min(3, len(want))])
			}
		}
	}
	check("at first", "ch-77", "ch-1150", "client 1", "client", "(ch-", "nobody")
	add("zelda@client.example", "Zelda Quist (CH-Z1)")
	add("ernst@client.example", "Ernst MÜLLER")
	add("anna@client.example", "Anna Müller")
	check("recorded later", "quist", "müller", "ch-z1")
	if _, err := r.db.ExecContext(ctx, `DROP TRIGGER client_names_on_insert`); err != nil {
		t.Fatal(err)
	}
	add("otto@client.example", "Otto Quist")
	check("the trigger lost", "quist")
}

// asciiLower lowers as SQLite's lower() does without ICU: ASCII letters only.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// BenchmarkSearchClientsFirst: the first search by name of a registry of
// 100,000 clients, which makes the names' index (once per registry file).
func BenchmarkSearchClientsFirst(b *testing.B) {
	now := time.Now()
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		r := clientRegistry(b, 100000, now)
		b.StartTimer()
		if _, _, err := r.SearchClients(ctx, "client 7777", "", 50, now); err != nil {
			b.Fatal(err)
		}
	}
}
