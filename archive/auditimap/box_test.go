package auditimap

import (
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestClientGroup: a client's mailbox is in the folder of its address's
// first character, so thousands of clients are a few dozen folders.
func TestClientGroup(t *testing.T) {
	for _, tt := range []struct{ address, box string }{
		{"anna@client.example", "Clients/A/anna@client.example"},
		{"Zoe@client.example", "Clients/Z/Zoe@client.example"},
		{"9lives@client.example", "Clients/0-9/9lives@client.example"},
		{"élodie@client.example", "Clients/Other/élodie@client.example"},
		{"_x@client.example", "Clients/Other/_x@client.example"},
	} {
		if got := clientBox(tt.address); got != tt.box {
			t.Errorf("%s: %s, want %s", tt.address, got, tt.box)
		}
	}
}

// TestDiff: what a client was told against the mailbox now: the messages
// that left it, and where the new ones begin.
func TestDiff(t *testing.T) {
	for _, tt := range []struct {
		told, now []uint32
		left      string
		fresh     int
	}{
		{[]uint32{1, 5, 9}, []uint32{1, 5, 9, 12}, "[false false false]", 3},
		{[]uint32{1, 5, 9}, []uint32{1, 9, 12, 13}, "[false true false]", 2},
		{[]uint32{1, 5, 9}, []uint32{1, 5, 12}, "[false false true]", 2},
		{[]uint32{1, 5, 9}, nil, "[true true true]", 0},
		{nil, []uint32{3, 4}, "[]", 0},
	} {
		told, now := box{uids: tt.told}, box{uids: tt.now}
		left, nLeft, fresh := diff(&told, &now)
		n := 0
		for _, l := range left {
			if l {
				n++
			}
		}
		if fmt.Sprint(left) != tt.left || nLeft != n || fresh != tt.fresh {
			t.Errorf("told %v, now %v: left %v (%d), new from %d; want %s, from %d", tt.told, tt.now, left, nLeft, fresh, tt.left, tt.fresh)
		}
	}
	told, now := box{uids: []uint32{1, 5}, about: []uint32{1, 2}}, box{uids: []uint32{1, 7}, about: []uint32{1, 2}}
	if b := withNew(&told, &now, 1); fmt.Sprint(b.uids, b.about) != "[1 5 7] [1 2 2]" || b.epoch != 0 {
		t.Errorf("told with the new ones: %v %v epoch %d", b.uids, b.about, b.epoch)
	}
}

// TestEach: a FETCH or STORE reaches each message its set names once, in
// mailbox order, by sequence number or UID, "*" the last.
func TestEach(t *testing.T) {
	ss := &session{box: box{uids: []uint32{3, 10, 11, 20, 40}}}
	for _, tt := range []struct {
		set  imap.NumSet
		want string
	}{
		{imap.SeqSet{{Start: 2, Stop: 3}}, "[2:10 3:11]"},
		{imap.SeqSet{{Start: 4, Stop: 0}}, "[4:20 5:40]"},
		{imap.SeqSet{{Start: 0, Stop: 0}}, "[5:40]"},
		{imap.SeqSet{{Start: 3, Stop: 1}, {Start: 2, Stop: 2}, {Start: 9, Stop: 12}}, "[1:3 2:10 3:11]"},
		{imap.UIDSet{{Start: 10, Stop: 20}}, "[2:10 3:11 4:20]"},
		{imap.UIDSet{{Start: 12, Stop: 0}}, "[4:20 5:40]"},
		{imap.UIDSet{{Start: 41, Stop: 0}}, "[5:40]"}, // 41:* is 40:41
		{imap.UIDSet{{Start: 4, Stop: 9}}, "[]"},
		{imap.UIDSet{{Start: 40, Stop: 40}, {Start: 1, Stop: 3}}, "[1:3 5:40]"},
	} {
		got := []string{}
		ss.each(tt.set, func(seq uint32, i int) error {
			got = append(got, fmt.Sprintf("%d:%d", seq, ss.box.uids[i]))
			return nil
		})
		if fmt.Sprint(got) != tt.want {
			t.Errorf("%v: %v, want %s", tt.set, got, tt.want)
		}
	}
}

// TestWithSummaries: a message's summary is replaced by one as of its
// newest record, which comes last (the highest UID); the others stay.
func TestWithSummaries(t *testing.T) {
	b := box{kind: kindDecisions, uids: []uint32{2, 4, 7}, about: []uint32{1, 3, 5}, epoch: epochs.Add(1)}
	got := withSummaries(b, []summary{{uid: 9, about: 9}}, map[uint32]uint32{3: 8})
	if fmt.Sprint(got.uids, got.about) != "[2 7 8 9] [1 5 3 9]" || got.epoch == b.epoch {
		t.Errorf("replaced: %v %v epoch %d", got.uids, got.about, got.epoch)
	}
	if fmt.Sprint(b.uids) != "[2 4 7]" {
		t.Errorf("the box before changed: %v", b.uids)
	}
	got = withSummaries(b, []summary{{uid: 9, about: 9}}, nil)
	if fmt.Sprint(got.uids, got.about) != "[2 4 7 9] [1 3 5 9]" || got.epoch != b.epoch {
		t.Errorf("added: %v %v epoch %d; want the same epoch", got.uids, got.about, got.epoch)
	}
}

// TestCountSeen: STATUS UNSEEN counts a viewer's \Seen flags on the
// mailbox's messages only, whether the viewer has read few messages or
// more than the mailbox holds.
func TestCountSeen(t *testing.T) {
	b := box{kind: kindArchived, uids: []uint32{3, 10, 11, 20}}
	for _, tt := range []struct {
		name string
		seen []seenKey
		want int
	}{
		{"none", nil, 0},
		{"fewer flags than messages", []seenKey{{kindArchived, 10}, {kindDecisions, 11}}, 1},
		{"more flags than messages", []seenKey{{kindArchived, 3}, {kindArchived, 11}, {kindArchived, 12}, {kindArchived, 13}, {kindDecisions, 20}, {kindArchived, 99}}, 2},
	} {
		f := &viewerFlags{seen: map[seenKey]bool{}}
		for _, k := range tt.seen {
			f.set(k, true)
		}
		if got := f.countSeen(&b); got != tt.want {
			t.Errorf("%s: %d seen, want %d", tt.name, got, tt.want)
		}
	}
}
