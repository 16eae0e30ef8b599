package archive

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

// TestCountSince: the day's counts from the index are what reading every
// record's header counts (SummarySince), with the refusals per account,
// whether the index holds every record (no relay runs) or the newest are
// read past its head (a relay writes), and for any start of the day.
func TestCountSince(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 2048)
	ctx := context.Background()
	start := f.clock()
	write := func(i int) {
		t.Helper()
		client := fmt.Sprintf("client%d@client.example", i)
		id := fmt.Sprintf("Q%d", i)
		m := Message{ID: id, Time: f.clock(), Direction: Outbound, Account: "anna", Sender: "anna@practice.example",
			Decisions: []record.Decision{{Recipient: client, Address: client, Protection: record.Consented}}}
		if err := a.RecordMessage(ctx, m, strings.NewReader("Subject: s\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
		kind := Delivered
		if i%3 == 0 {
			kind = Bounced
		}
		if err := a.RecordEvent(ctx, Event{MessageID: id, Time: f.clock(), Kind: kind, Recipients: []string{client}}); err != nil {
			t.Fatal(err)
		}
		account := []string{"anna", "ben"}[i%2]
		if err := a.RecordRefusal(ctx, RefusalRecord{Time: f.clock(), Account: account, Recipient: "x" + client, Ref: fmt.Sprintf("R%05d", i), Code: "nothing_on_file"}); err != nil {
			t.Fatal(err)
		}
		f.advance(time.Hour)
	}
	for i := range 12 {
		write(i)
	}
	if _, err := a.RecordInbound(ctx, IngestedMessage{Message: Message{ID: "in1", Time: f.clock(), Direction: Inbound, Account: "anna", Sender: "c@client.example", Folder: "INBOX"},
		Clients: []string{"c@client.example"}, Source: IngestSource{Account: "anna", Folder: "INBOX", UIDValidity: 1, UID: 1}}, strings.NewReader("Subject: r\r\n\r\nreply\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := a.IndexCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 12; i < 16; i++ {
		write(i) // while the relay writes: the index may not hold these yet
	}
	check := func(state string, want map[time.Time]DayCounts) {
		t.Helper()
		for since, w := range want {
			got, err := CountSince(ctx, f.dir, since)
			if err != nil {
				t.Fatalf("%s, since %s: %v", state, since, err)
			}
			read, err := SummarySince(ctx, f.dir, since)
			if err != nil {
				t.Fatal(err)
			}
			if got.Summary != read || got.Summary != w.Summary || !maps.Equal(got.RefusedBy, w.RefusedBy) {
				t.Errorf("%s, since %s: counted %+v, read %+v, want %+v", state, since, got, read, w)
			}
		}
	}
	want := map[time.Time]DayCounts{
		start:                     {Summary{Sent: 16, Received: 1, Delivered: 10, Bounced: 6, Refused: 16}, map[string]int{"anna": 8, "ben": 8}},
		start.Add(13 * time.Hour): {Summary{Sent: 3, Delivered: 2, Bounced: 1, Refused: 3}, map[string]int{"anna": 1, "ben": 2}},
		f.clock():                 {Summary{}, map[string]int{}},
	}
	check("a relay writing", want)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	check("no relay", want)

	// A segment pruned after the index read it: its records are not
	// counted, as they are no longer read.
	segs, err := listSegments(f.dir)
	if err != nil || len(segs) < 3 {
		t.Fatalf("segments %v %v", segs, err)
	}
	if err := os.Remove(filepath.Join(f.dir, segs[1])); err != nil {
		t.Fatal(err)
	}
	got, err := CountSince(ctx, f.dir, start)
	read, _ := SummarySince(ctx, f.dir, start)
	if err != nil || got.Summary != read || got.Sent >= 16 {
		t.Errorf("with %s pruned: counted %+v (%v), read %+v", segs[1], got, err, read)
	}
}
