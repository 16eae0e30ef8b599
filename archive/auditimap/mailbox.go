package auditimap

import (
	"sort"
	"sync"
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

// entry is one message of a mailbox: an archived one, or one the view
// generates. An entry never changes: a generated message whose content
// would change (a decisions summary after a delivery) is a new entry with
// a higher UID, and the old one leaves its mailbox.
type entry struct {
	uid  uint32
	date time.Time
	seen seenKey
	// archived is served from the record; otherwise generate makes the bytes.
	archived *archive.ViewMessage
	generate func() []byte
	once     sync.Once
	bytes    []byte
}

// body is the message's bytes.
func (e *entry) body(v *archive.View) ([]byte, error) {
	if e.archived != nil {
		return v.Body(e.archived)
	}
	e.once.Do(func() { e.bytes = e.generate() })
	return e.bytes, nil
}

// size is RFC822.SIZE: an archived message's is known without decrypting it.
func (e *entry) size() int64 {
	if e.archived != nil {
		return e.archived.Size
	}
	e.once.Do(func() { e.bytes = e.generate() })
	return int64(len(e.bytes))
}

// seenKey is what a viewer's \Seen flag is kept under: an archived message
// is one message in every mailbox that shows it (read in All, it is read
// in its client's mailbox too).
type seenKey struct {
	kind byte // 'a' archived, 'd' decisions, 'r' refused, 'i' INBOX
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

// mailboxSet is every mailbox as built from one version of the view.
type mailboxSet struct {
	version uint64
	boxes   map[string][]*entry
}

// buildMailboxes groups the view's records into mailboxes, each in UID
// order.
func buildMailboxes(v *archive.View, version uint64, started time.Time) *mailboxSet {
	msgs := v.Messages()
	set := &mailboxSet{version: version, boxes: map[string][]*entry{boxAll: nil, boxDecisions: nil, boxRefused: nil}}
	welcomeDate := started
	if len(msgs) > 0 {
		welcomeDate = msgs[0].Time
	}
	set.boxes[boxInbox] = []*entry{{uid: 1, date: welcomeDate, seen: seenKey{'i', 1}, generate: welcomeMessage(welcomeDate)}}
	byRef := map[string]*archive.ViewMessage{} // a refusal's message, when the others got it
	var decisions []*entry
	for _, m := range msgs {
		for _, r := range m.Refused {
			byRef[r.Ref] = m
		}
		e := &entry{uid: uint32(m.Seq), date: m.Time, seen: seenKey{'a', uint32(m.Seq)}, archived: m}
		set.boxes[boxAll] = append(set.boxes[boxAll], e)
		month := prefixMonth + m.Time.UTC().Format("2006-01")
		set.boxes[month] = append(set.boxes[month], e)
		for _, c := range m.Clients {
			set.boxes[prefixClient+c] = append(set.boxes[prefixClient+c], e)
		}
		if m.Direction == archive.Outbound {
			decisions = append(decisions, &entry{uid: uint32(m.Updated), date: m.Time, seen: seenKey{'d', uint32(m.Updated)}, generate: decisionsMessage(m)})
		}
	}
	// A summary's UID is that of the newest record it tells of: the order
	// of UIDs is not that of the messages.
	sort.Slice(decisions, func(i, j int) bool { return decisions[i].uid < decisions[j].uid })
	set.boxes[boxDecisions] = decisions
	for _, r := range v.Refusals() {
		set.boxes[boxRefused] = append(set.boxes[boxRefused], &entry{uid: uint32(r.Seq), date: r.Time, seen: seenKey{'r', uint32(r.Seq)}, generate: refusalMessage(r, byRef[r.Ref])})
	}
	return set
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
