package auditimap

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/archive"
)

// The mailboxes of the view. All, Clients/ADDRESS and Months/YYYY-MM hold
// the archived messages, byte for byte; INBOX, Decisions and Refused hold
// messages the view writes from the record (generated.go), which are not
// part of it.
const (
	boxInbox     = "INBOX"
	boxAll       = "All"
	boxDecisions = "Decisions"
	boxRefused   = "Refused"
	prefixClient = "Clients/"
	prefixMonth  = "Months/"
)

// box is a mailbox: the UIDs of its messages in ascending order, and what
// each is, as fixed-width numbers (a million messages in All, their months
// and clients cost a few MB). What a message shows is taken from the view
// when asked for: its date and size from its listing, its bytes decrypted
// again or made from the record (generated.go).
type box struct {
	kind seenKind
	uids []uint32
	// about is, in Decisions, the Seq of the message each summary is about.
	about []uint32
	// refused is, in Refused, each refusal.
	refused []*refusalEntry
	// epoch changes whenever a message leaves the box: while it is the
	// same, a box with more UIDs holds the same ones first, and only the
	// new ones need telling (Poll).
	epoch uint64
}

// epochs numbers the boxes' epochs, unique across sets.
var epochs atomic.Uint64

func (b *box) len() int { return len(b.uids) }

// seenKind is what a viewer's \Seen flag is kept under.
type seenKind byte

const (
	kindArchived  seenKind = 'a'
	kindDecisions seenKind = 'd'
	kindRefused   seenKind = 'r'
	kindInbox     seenKind = 'i'
)

// refusalEntry is a message of Refused: its text is made once and kept, as
// it could come out otherwise if made again (a refusal made before the
// message its submission became was recorded).
type refusalEntry struct {
	r    *archive.ViewRefusal
	kept keptBytes
}

type keptBytes struct {
	once  sync.Once
	bytes []byte
}

// seenOf is the key the i-th message's \Seen flag is kept under.
func (b *box) seenOf(i int) seenKey { return seenKey{b.kind, b.uids[i]} }

// body is the i-th message's bytes.
func (b *box) body(s *Server, i int) ([]byte, error) {
	switch b.kind {
	case kindArchived:
		return s.o.View.Body(&archive.ViewMessage{Seq: uint64(b.uids[i])})
	case kindDecisions:
		uid, about := b.uids[i], b.about[i]
		return s.summaries.get(b.seenOf(i), func() []byte { return decisionsMessage(s.o.View, uint64(about), uint64(uid)) }), nil
	case kindRefused:
		e := b.refused[i]
		e.kept.once.Do(func() { e.kept.bytes = refusalMessage(s.o.View, e.r) })
		return e.kept.bytes, nil
	}
	s.welcome.once.Do(func() { s.welcome.bytes = welcomeMessage(s.welcomeDate()) })
	return s.welcome.bytes, nil
}

// date is the i-th message's INTERNALDATE.
func (b *box) date(s *Server, i int) time.Time {
	switch b.kind {
	case kindArchived, kindDecisions:
		seq := b.uids[i]
		if b.kind == kindDecisions {
			seq = b.about[i]
		}
		l, _ := s.o.View.Listing(uint64(seq))
		return l.Time
	case kindRefused:
		return b.refused[i].r.Time
	}
	return s.welcomeDate()
}

// size is RFC822.SIZE: an archived message's is known without decrypting it.
func (b *box) size(s *Server, i int) int64 {
	if b.kind == kindArchived {
		l, _ := s.o.View.Listing(uint64(b.uids[i]))
		return l.Size
	}
	body, _ := b.body(s, i)
	return int64(len(body))
}

// summaryCache keeps the newest generated summaries, up to max octets.
type summaryCache struct {
	mu    sync.Mutex
	max   int
	used  int
	byKey map[seenKey][]byte
	order []seenKey // oldest first
}

func (c *summaryCache) get(k seenKey, generate func() []byte) []byte {
	c.mu.Lock()
	b, ok := c.byKey[k]
	c.mu.Unlock()
	if ok {
		return b
	}
	b = generate()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[k]; !ok && len(b) <= c.max {
		c.byKey[k], c.order, c.used = b, append(c.order, k), c.used+len(b)
		for c.used > c.max {
			old := c.order[0]
			c.order = c.order[1:]
			c.used -= len(c.byKey[old])
			delete(c.byKey, old)
		}
	}
	return b
}

// seenKey is what a viewer's \Seen flag is kept under: an archived message
// is one message in every mailbox that shows it (read in All, it is read
// in its client's mailbox too).
type seenKey struct {
	kind seenKind
	uid  uint32
}

// viewerFlags are one viewer's \Seen flags, kept in memory while the view
// runs: nothing a viewer does is ever written, and the record has no flags.
type viewerFlags struct {
	mu   sync.Mutex
	seen map[seenKey]bool
}

func (f *viewerFlags) isSeen(k seenKey) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[k]
}

func (f *viewerFlags) set(k seenKey, seen bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seen {
		f.seen[k] = true
	} else {
		delete(f.seen, k)
	}
}

// countSeen counts the messages of b the viewer has seen: by the flags
// set or by the mailbox's messages, whichever are fewer, so a mail client
// asking every folder for its unread count costs at most the record once.
func (f *viewerFlags) countSeen(b *box) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	if len(f.seen) < b.len() {
		for k := range f.seen {
			if _, ok := slices.BinarySearch(b.uids, k.uid); ok && k.kind == b.kind {
				n++
			}
		}
		return n
	}
	for _, uid := range b.uids {
		if f.seen[seenKey{b.kind, uid}] {
			n++
		}
	}
	return n
}

// mailboxSet is every mailbox as of the newest records the server has
// taken from the view. It is kept up to date from the view's changes
// (apply), never built again for a command: a new set shares the slices of
// the one before, appending past their ends (sessions hold the old ends,
// and never look past them), and copies only a mailbox a message leaves
// (Decisions, when a newer summary replaces a message's).
type mailboxSet struct {
	cursor archive.ViewCursor
	boxes  map[string]box
}

// newMailboxSet is the set before the view's first records: every mailbox
// but the months' and the clients', empty but for INBOX's one message.
func newMailboxSet() *mailboxSet {
	set := &mailboxSet{boxes: map[string]box{}}
	for name, kind := range map[string]seenKind{boxAll: kindArchived, boxDecisions: kindDecisions, boxRefused: kindRefused} {
		set.boxes[name] = box{kind: kind, epoch: epochs.Add(1)}
	}
	set.boxes[boxInbox] = box{kind: kindInbox, uids: []uint32{1}, epoch: epochs.Add(1)}
	return set
}

// apply makes the set that follows this one with what the view found
// since: new messages and refusals are appended, a message an event
// changed gets a new summary in Decisions (its UID the event's) and its
// old one leaves. It returns nil when the set must be built again (a
// prune took messages out).
func (set *mailboxSet) apply(v *archive.View) *mailboxSet {
	next := &mailboxSet{boxes: set.boxes}
	cloned := false
	appendTo := func(name string, kind seenKind, uid uint32) *box {
		if !cloned {
			next.boxes, cloned = maps.Clone(set.boxes), true
		}
		b, ok := next.boxes[name]
		if !ok {
			b = box{kind: kind, epoch: epochs.Add(1)}
		}
		b.uids = append(b.uids, uid)
		next.boxes[name] = b
		return &b
	}
	var summaries []summary
	replaced := map[uint32]uint32{} // a message's Seq -> the UID of its newest summary
	cursor, ok := v.Changes(set.cursor, func(m archive.ViewListing) {
		uid := uint32(m.Seq)
		appendTo(boxAll, kindArchived, uid)
		appendTo(monthBox(m.Time), kindArchived, uid)
		for _, c := range m.Clients {
			appendTo(clientBox(c), kindArchived, uid)
		}
		if m.Direction == archive.Outbound {
			summaries = append(summaries, summary{uid: uint32(m.Updated), about: uid})
		}
	}, func(m archive.ViewListing) {
		if m.Direction == archive.Outbound {
			replaced[uint32(m.Seq)] = uint32(m.Updated)
		}
	}, func(r *archive.ViewRefusal) {
		b := appendTo(boxRefused, kindRefused, uint32(r.Seq))
		b.refused = append(b.refused, &refusalEntry{r: r})
		next.boxes[boxRefused] = *b
	})
	if !ok {
		return nil
	}
	next.cursor = cursor
	if len(summaries) > 0 || len(replaced) > 0 {
		if !cloned {
			next.boxes = maps.Clone(set.boxes)
		}
		next.boxes[boxDecisions] = withSummaries(next.boxes[boxDecisions], summaries, replaced)
	}
	return next
}

// summary is a message of Decisions.
type summary struct{ uid, about uint32 }

// withSummaries is Decisions with the summaries added, and for each message
// in replaced its summary replaced by one as of its newest record.
func withSummaries(b box, added []summary, replaced map[uint32]uint32) box {
	gone := map[int]bool{}
	for about, uid := range replaced {
		// A message's summary has a UID at or above its own; most are
		// replaced soon after they were recorded, near the end.
		i, _ := slices.BinarySearch(b.uids, about)
		for ; i < len(b.uids) && b.about[i] != about; i++ {
		}
		if i < len(b.uids) && b.uids[i] != uid {
			gone[i] = true
			added = append(added, summary{uid: uid, about: about})
		}
	}
	slices.SortFunc(added, func(x, y summary) int { return cmp.Compare(x.uid, y.uid) })
	if len(gone) > 0 {
		uids, about := make([]uint32, 0, len(b.uids)-len(gone)+len(added)), make([]uint32, 0, len(b.uids)-len(gone)+len(added))
		for i := range b.uids {
			if !gone[i] {
				uids, about = append(uids, b.uids[i]), append(about, b.about[i])
			}
		}
		b.uids, b.about, b.epoch = uids, about, epochs.Add(1)
	}
	for _, s := range added {
		b.uids, b.about = append(b.uids, s.uid), append(b.about, s.about)
	}
	return b
}

// monthBox is the mailbox of the month (UTC) a message was recorded in.
func monthBox(t time.Time) string { return prefixMonth + t.UTC().Format("2006-01") }

// clientBox is a client's mailbox, under a folder of the address's first
// character: a practice's thousands of clients are dozens of folders of a
// few hundred each in a mail client's folder list, not one list of
// thousands.
func clientBox(address string) string { return prefixClient + clientGroup(address) + "/" + address }

// clientGroup is the folder of Clients a client's mailbox is in: A to Z
// for an address starting with a letter, 0-9 for a digit, Other else.
func clientGroup(address string) string {
	switch c := address[0]; {
	case 'a' <= c && c <= 'z':
		return string(rune(c - 'a' + 'A'))
	case 'A' <= c && c <= 'Z':
		return string(rune(c))
	case '0' <= c && c <= '9':
		return "0-9"
	}
	return "Other"
}

// canonicalName is the mailbox's name as the view knows it: INBOX is
// case-insensitive (RFC 3501 5.1), every other name is not.
func canonicalName(name string) string {
	if len(name) == len(boxInbox) && equalFoldASCII(name, boxInbox) {
		return boxInbox
	}
	return name
}

func equalFoldASCII(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
