package archive

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

// TestClientTimeline: a client's records (a message to them, its delivery,
// a refusal, their consent) in order from the clear headers, found by any
// spelling of the address; another client's are not among them.
func TestClientTimeline(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	defer a.Close()
	ctx := context.Background()
	step := func() { f.advance(time.Minute) }
	if err := a.RecordConsent(ctx, record.ConsentEvent{ID: 1, Kind: record.ConsentGiven, Addresses: []string{"dora@client.example"}, Signed: "2026-11-01"}); err != nil {
		t.Fatal(err)
	}
	step()
	m := Message{ID: "Q1", Time: f.clock(), Direction: Outbound, Account: "anna", Sender: "anna@practice.example",
		Decisions: []record.Decision{{Recipient: "dora@client.example", Address: "dora@client.example", Protection: record.Consented}}}
	if err := a.RecordMessage(ctx, m, strings.NewReader("Subject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	step()
	a.RecordEvent(ctx, Event{MessageID: "Q1", Time: f.clock(), Kind: Delivered, Recipients: []string{"dora@client.example"}})
	step()
	a.RecordRefusal(ctx, RefusalRecord{Time: f.clock(), Account: "ben", Recipient: "eli@client.example", Ref: "R7K2QX", Code: "nothing_on_file"})
	step()
	a.RecordRefusal(ctx, RefusalRecord{Time: f.clock(), Account: "ben", Recipient: "dora@client.example", Ref: "M4TJ7C", Code: "consent_revoked"})
	a.Close()
	got, more, err := ClientTimeline(ctx, f.dir, "Dora@Client.Example", time.Time{}, 0)
	if err != nil || more {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range got {
		kinds = append(kinds, e.Kind+"/"+e.Direction+e.Event+e.Code)
	}
	if strings.Join(kinds, " ") != "consent/ message/outbound event/delivered refusal/consent_revoked" {
		t.Errorf("dora's timeline: %v", kinds)
	}
	if got[1].Size == 0 || got[1].Account != "" && got[1].Account != "anna" {
		t.Errorf("the message's entry: %+v", got[1])
	}
	if got, more, _ := ClientTimeline(ctx, f.dir, "dora@client.example", time.Time{}, 2); len(got) != 2 || !more {
		t.Errorf("at most 2: %d, more %v", len(got), more)
	}
	if got, _, _ := ClientTimeline(ctx, f.dir, "nobody@client.example", time.Time{}, 0); len(got) != 0 {
		t.Errorf("a stranger's timeline: %+v", got)
	}
	sum, err := SummarySince(ctx, f.dir, time.Time{})
	if err != nil || sum != (Summary{Sent: 1, Delivered: 1, Refused: 2}) {
		t.Errorf("summary %+v %v", sum, err)
	}
	if sum, _ := SummarySince(ctx, f.dir, f.clock()); sum != (Summary{Refused: 1}) {
		t.Errorf("summary of the last minute %+v", sum)
	}
}
