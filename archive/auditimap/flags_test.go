package auditimap

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func unseen(t *testing.T, c *imapclient.Client, box string) uint32 {
	t.Helper()
	st, err := c.Status(box, &imap.StatusOptions{NumUnseen: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return *st.NumUnseen
}

func flagsOf(t *testing.T, c *imapclient.Client, seq uint32) string {
	t.Helper()
	msgs, err := c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH %d FLAGS: %v %v", seq, msgs, err)
	}
	return fmt.Sprint(msgs[0].Flags)
}

// TestSeenPerViewer: a viewer's mail client marks what it read, as with
// any mailbox: reading a message (BODY[] in a SELECTed mailbox) or STORE
// sets \Seen, for that viewer in every mailbox that shows the message and
// in their other connections, not for another viewer; EXAMINE and .PEEK
// set nothing; no other flag can be set; a restart of the view forgets it.
func TestSeenPerViewer(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	f.outbound(t, "q1", "One", "one", at, consented(client))
	f.inbound(t, "i1", "Two", "two", at.Add(time.Minute))
	f.outbound(t, "q2", "Three", "three", at.Add(2*time.Minute), internal(colleague))
	addr, tc := f.serveViewers(t, io.Discard, "auditor", "owner")
	a := loginAs(t, addr, tc, "auditor")
	box := clientBoxName
	if n := unseen(t, a, box); n != 2 {
		t.Fatalf("before reading: %d unseen in %s, want 2", n, box)
	}

	// .PEEK and EXAMINE read without marking.
	if _, err := a.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect(); err != nil {
		t.Fatal(err)
	}
	if err := a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err == nil {
		t.Error("STORE in an EXAMINEd mailbox was taken")
	}
	if _, err := a.Select(box, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect(); err != nil {
		t.Fatal(err)
	}
	if got := flagsOf(t, a, 1); got != "[]" {
		t.Fatalf("after EXAMINE and BODY.PEEK[]: FLAGS %s, want none", got)
	}

	// Reading marks it, and the FETCH says so.
	msgs, err := a.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 1 || fmt.Sprint(msgs[0].Flags) != `[\Seen]` {
		t.Fatalf("FETCH BODY[]: %+v %v; want FLAGS (\\Seen) with it", msgs, err)
	}
	if n := unseen(t, a, "All"); n != 2 {
		t.Errorf("All: %d unseen after reading one of three in %s, want 2 (the same message)", n, box)
	}
	a2 := loginAs(t, addr, tc, "auditor")
	if n := unseen(t, a2, box); n != 1 {
		t.Errorf("the viewer's second connection: %d unseen, want 1", n)
	}
	o := loginAs(t, addr, tc, "owner")
	if n := unseen(t, o, box); n != 2 {
		t.Errorf("another viewer: %d unseen, want 2: flags are per viewer", n)
	}

	// STORE sets and clears \Seen only.
	if err := a.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	data, err := a.Search(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil || fmt.Sprint(data.AllSeqNums()) != "[1 2]" {
		t.Errorf("SEARCH SEEN: %v %v, want [1 2]", data, err)
	}
	if err := a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsDel, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if got := flagsOf(t, a, 1); got != "[]" {
		t.Errorf("after -FLAGS (\\Seen): %s", got)
	}
	data, err = a.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil || fmt.Sprint(data.AllSeqNums()) != "[1]" {
		t.Errorf("SEARCH UNSEEN: %v %v, want [1]", data, err)
	}
	for _, fl := range []imap.Flag{imap.FlagDeleted, imap.FlagFlagged, imap.FlagAnswered, "$Label1"} {
		err := a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{fl}}, nil).Close()
		var ierr *imap.Error
		if !errors.As(err, &ierr) || !strings.Contains(ierr.Text, "read-only") {
			t.Errorf("STORE +FLAGS (%s): %v; want NO read-only", fl, err)
		}
	}
	if err := a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsSet, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if got := flagsOf(t, a, 1); got != `[\Seen]` {
		t.Errorf("after FLAGS (\\Seen): %s", got)
	}

	// A new view remembers nothing.
	addr2, tc2 := f.serveViewers(t, io.Discard, "auditor")
	if n := unseen(t, loginAs(t, addr2, tc2, "auditor"), box); n != 2 {
		t.Errorf("a restarted view: %d unseen, want 2", n)
	}
}
