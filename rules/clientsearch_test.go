package rules

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clientRegistry is a registry of n clients c00000@client.example ...
// named "Client N" with chart id "CH-N", one in ten with an end date in
// the next 30 days, and a passphrase for the first.
func clientRegistry(t testing.TB, n int, now time.Time) *Registry {
	t.Helper()
	r, err := openRegistryAt(t, filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	var csv strings.Builder
	csv.WriteString("address,name,signed,evidence,expires\n")
	for i := 0; i < n; i++ {
		expires := ""
		if i%10 == 3 {
			expires = now.AddDate(0, 0, 1+i%29).Format(dateLayout)
		}
		fmt.Fprintf(&csv, "c%05d@client.example,Client %d (CH-%d),2026-01-02,intake form,%s\n", i, i, i, expires)
	}
	if _, err := r.Import(context.Background(), strings.NewReader(csv.String()), "admin"); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSearchClients: the list pages through every client in address
// order; a search by address prefix or by name or chart id finds those
// and only those; consents ending within 30 days are listed soonest first.
func TestSearchClients(t *testing.T) {
	now := time.Now()
	r := clientRegistry(t, 250, now)
	ctx := context.Background()
	var all []string
	after := ""
	for pages := 0; ; pages++ {
		page, next, err := r.SearchClients(ctx, "", after, 100, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			all = append(all, e.Address)
		}
		if next == "" {
			if pages != 2 {
				t.Errorf("%d pages of 100 for 250 clients", pages+1)
			}
			break
		}
		after = next
	}
	if len(all) != 250 || all[0] != "c00000@client.example" || all[249] != "c00249@client.example" {
		t.Fatalf("paged through %d clients, from %v", len(all), all[:min(3, len(all))])
	}
	for _, tt := range []struct {
		text string
		want []string
	}{
		{"c0012", []string{"c00120@client.example", "c00129@client.example"}}, // an address's start
		{"c0012.", nil},
		{"client 12", []string{"c00012@client.example", "c00129@client.example"}}, // 12, 120-129
		{"C00120@", []string{"c00120@client.example"}},
		{"ch-7", []string{"c00007@client.example", "c00079@client.example"}},
		{"Client 42 ", []string{"c00042@client.example"}},
		{"nobody@", nil},
		{"100%", nil},
	} {
		page, _, err := r.SearchClients(ctx, tt.text, "", 50, now)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range page {
			got = append(got, e.Address)
		}
		switch {
		case len(tt.want) == 0 && len(got) != 0:
			t.Errorf("%q found %v", tt.text, got)
		case len(tt.want) > 0 && (len(got) == 0 || got[0] != tt.want[0] || got[len(got)-1] != tt.want[len(tt.want)-1]):
			t.Errorf("%q found %v, want %v ... %v", tt.text, got, tt.want[0], tt.want[len(tt.want)-1])
		}
	}
	exp, more, err := r.ExpiringConsents(ctx, 30, 100, now)
	if err != nil || len(exp) != 25 || more || exp[0].Expires > exp[len(exp)-1].Expires {
		t.Fatalf("%d expiring, more %v, %v", len(exp), more, err)
	}
	if exp, more, _ := r.ExpiringConsents(ctx, 30, 10, now); len(exp) != 10 || !more {
		t.Errorf("at most 10: %d, more %v", len(exp), more)
	}
	if _, err := r.Revoke(ctx, "c00042@client.example", "asked by phone", "admin"); err != nil {
		t.Fatal(err)
	}
	if all, err := r.Addresses(ctx); err != nil || len(all) != 250 {
		t.Errorf("%d addresses, %v", len(all), err)
	}
	hist, err := r.ClientHistory(ctx, "C00042@client.example")
	if err != nil || len(hist) != 2 || hist[0].Kind != "given" || hist[1].Kind != "revoked" || hist[1].Reason != "asked by phone" {
		t.Errorf("history %+v %v", hist, err)
	}
}

// BenchmarkSearchClients: a page of 50 of 100,000 clients, from the start,
// from the middle, by address and by name.
func BenchmarkSearchClients(b *testing.B) {
	now := time.Now()
	r := clientRegistry(b, 100000, now)
	ctx := context.Background()
	for _, bb := range []struct{ name, text, after string }{
		{"first page", "", ""}, {"middle page", "", "c50000@client.example"}, {"address", "c07777@", ""}, {"name", "client 7777 ", ""},
	} {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := r.SearchClients(ctx, bb.text, bb.after, 50, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
