package auditimap

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestPrunedWhileSelected: messages past retention leave a mailbox that
// is open (EXPUNGE at the next NOOP, the rest keep their UIDs), and a
// client whose every message was pruned leaves the folder list.
func TestPrunedWhileSelected(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const bob = "bob@client.example"
	at := time.Date(2020, 1, 6, 9, 0, 0, 0, time.UTC)
	f.outbound(t, "old", "Old", "old", at, consented(bob))
	f.arch.CloseSegment(ctx)
	f.mu.Lock()
	f.now = f.now.Add(8 * 365 * 24 * time.Hour)
	f.mu.Unlock()
	kept := f.outbound(t, "new", "New", "new", at.Add(8*365*24*time.Hour), consented(client))
	addr, tc := f.serve(t, io.Discard)
	expunged := make(chan uint32, 10)
	c, err := imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: tc, UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { expunged <- seq },
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("auditor", "audit-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if sel, err := c.Select("All", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil || sel.NumMessages != 2 {
		t.Fatalf("SELECT All before the prune: %+v %v", sel, err)
	}
	if rep, err := f.arch.Prune(ctx, 7*365*24*time.Hour, false); err != nil || len(rep.Removed) != 1 {
		t.Fatalf("prune: %+v %v", rep, err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	select {
	case seq := <-expunged:
		if seq != 1 {
			t.Errorf("EXPUNGE %d, want 1 (the old message)", seq)
		}
	default:
		t.Fatal("no EXPUNGE for the pruned message after NOOP")
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Errorf("All holds %d messages after the prune, want 1", n)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 || !strings.Contains(string(msgs[0].FindBodySection(&imap.FetchItemBodySection{Peek: true})), "Subject: "+kept.subject) {
		t.Fatalf("the message left: %+v %v", msgs, err)
	}
	boxes, err := c.List("", "Clients/*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range boxes {
		names = append(names, b.Mailbox)
	}
	if got := strings.Join(names, " "); got != "Clients/A "+clientBoxName {
		t.Errorf("Clients after the prune: %s; want only Anna's", got)
	}
}
