package rules

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

// TestListPagesAsCurrent: the list, read a page at a time, says of every
// address what Current says of it alone, over every kind of history
// (given, revoked, given again, expired, a passphrase set, replaced and
// removed), whatever the page size.
func TestListPagesAsCurrent(t *testing.T) {
	r, _ := openTestRegistry(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	give := func(a, expires string) {
		t.Helper()
		if _, err := r.Add(ctx, record.ConsentEvent{Kind: record.ConsentGiven, Addresses: []string{a}, Client: "Chart " + a[:3], Signed: "2026-01-02", Evidence: "form", Expires: expires, RecordedBy: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	var addrs []string
	for i := range 23 {
		a := fmt.Sprintf("c%02d@client.example", i)
		addrs = append(addrs, a)
		switch i % 6 {
		case 0:
			give(a, "")
		case 1:
			give(a, "")
			if _, err := r.Revoke(ctx, a, "asked", "admin"); err != nil {
				t.Fatal(err)
			}
		case 2:
			give(a, "")
			r.Revoke(ctx, a, "asked", "admin")
			give(a, "")
		case 3:
			give(a, "2026-06-30")
		case 4:
			if _, err := r.SetPassphrase(ctx, []string{a}, "Chart", annaPassphrase, "admin"); err != nil {
				t.Fatal(err)
			}
			give(a, "")
		case 5:
			r.SetPassphrase(ctx, []string{a}, "Chart", annaPassphrase, "admin")
			r.SetPassphrase(ctx, []string{a}, "Chart", annaReplacement, "admin")
			if _, err := r.RemovePassphrase(ctx, []string{a}, "admin"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, all := range []bool{false, true} {
		var want []ConsentEntry
		for _, a := range addrs {
			st, err := r.Current(ctx, a, now)
			if err != nil {
				t.Fatal(err)
			}
			if all || st.State == ConsentActive || st.Passphrase != nil {
				want = append(want, listEntry(st))
			}
		}
		for _, size := range []int{1, 4, 23, 1000} {
			var got []ConsentEntry
			after := ""
			for pages := 0; ; pages++ {
				page, next, err := r.ListPage(ctx, all, now, after, size)
				if err != nil || pages > 30 {
					t.Fatalf("page %d: %v", pages, err)
				}
				got = append(got, page...)
				if next == "" {
					break
				}
				after = next
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
				t.Errorf("all %v, pages of %d:\n got %+v\nwant %+v", all, size, got, want)
			}
		}
		if got, err := r.List(ctx, all, now); err != nil || fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Errorf("List(all %v): %v\n got %+v\nwant %+v", all, err, got, want)
		}
	}
}
