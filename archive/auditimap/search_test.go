package auditimap

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TestSearchLimits: a SEARCH with more criteria than a mail client uses
// (each reads every message again) is refused, not run for hours.
func TestSearchLimits(t *testing.T) {
	f := newFixture(t)
	f.outbound(t, "m1", "Hello", "needle in the text", time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), consented("anna@client.example"))
	addr, tc := f.serve(t, io.Discard)
	c := login(t, addr, tc)
	defer c.Close()
	if _, err := c.Select("All", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if data, err := c.Search(&imap.SearchCriteria{Text: []string{"needle", "text"}}, nil).Wait(); err != nil || len(data.AllSeqNums()) != 1 {
		t.Fatalf("a plain search: %v, %v", data, err)
	}
	many := &imap.SearchCriteria{}
	for i := 0; i < maxSearchCriteria+1; i++ {
		many.Text = append(many.Text, "needle")
	}
	deep := &imap.SearchCriteria{Text: []string{"needle"}}
	for i := 0; i < maxSearchDepth+1; i++ {
		deep = &imap.SearchCriteria{Not: []imap.SearchCriteria{*deep}}
	}
	for name, crit := range map[string]*imap.SearchCriteria{"many": many, "deep": deep} {
		if _, err := c.Search(crit, nil).Wait(); err == nil || !strings.Contains(err.Error(), "Too many search criteria") {
			t.Errorf("%s: %v; want a refusal", name, err)
		}
	}
}
