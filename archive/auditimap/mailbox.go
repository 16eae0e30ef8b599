package auditimap

import (
	"maps"
	"slices"
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
	// kept holds the bytes of a generated message once made, for those
	// that could come out otherwise if made again (a refusal, made before
	// the message its submission became was recorded). A decisions summary
	// is made from its records alone, the same every time: the server's
	// bounded cache keeps the latest instead, so that a client reading
	// every summary does not keep them all in memory.
	kept *keptBytes
}

type keptBytes struct {
	once  sync.Once
	bytes []byte
}

// body is the message's bytes.
func (e *entry) body(s *Server) ([]byte, error) {
	switch {
	case e.archived != nil:
		return s.o.View.Body(e.archived)
	case e.kept != nil:
		e.kept.once.Do(func() { e.kept.bytes = e.generate() })
		return e.kept.bytes, nil
	}
	return s.summaries.get(e.seen, e.generate), nil
}

// size is RFC822.SIZE: an archived message's is known without decrypting it.
func (e *entry) size(s *Server) int64 {
	if e.archived != nil {
		return e.archived.Size
	}
	b, _ := e.body(s)
	return int64(len(b))
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

// mailboxSet is every mailbox as of the newest records the server has
// taken from the view. It is kept up to date from the view's changes
// (apply), never built again for a command: a new set shares the slices of
// the one before, appending past their ends (sessions hold the old ends,
// and never look past them), and copies only a mailbox a message leaves
// (Decisions, when a newer summary replaces a message's).
type mailboxSet struct {
	cursor    archive.ViewCursor
	boxes     map[string][]*entry
	maxSeq    uint64            // the newest message in the set
	decisions map[uint64]uint32 // a message's Seq -> the UID of its summary in Decisions
	// sent finds the message a refusal's submission became (nil: none):
	// it may be recorded after the refusal, so refusals look it up when
	// their text is made.
	sent *sync.Map // ref -> *archive.ViewMessage
	view *archive.View
}

// buildMailboxes groups the view's records into mailboxes, each in UID
// order: once, when the server starts, and after a prune.
func buildMailboxes(v *archive.View, started time.Time) *mailboxSet {
	msgs, refusals, cursor := v.Snapshot()
	set := &mailboxSet{cursor: cursor, boxes: map[string][]*entry{boxAll: nil, boxDecisions: nil, boxRefused: nil},
		decisions: map[uint64]uint32{}, sent: &sync.Map{}, view: v}
	welcomeDate := started
	if len(msgs) > 0 {
		welcomeDate = msgs[0].Time
	}
	set.boxes[boxInbox] = []*entry{{uid: 1, date: welcomeDate, seen: seenKey{'i', 1}, generate: welcomeMessage(welcomeDate), kept: &keptBytes{}}}
	var decisions []*entry
	for _, m := range msgs {
		decisions = set.addMessage(m, decisions)
	}
	// A summary's UID is that of the newest record it tells of: the order
	// of UIDs is not that of the messages.
	sort.Slice(decisions, func(i, j int) bool { return decisions[i].uid < decisions[j].uid })
	set.boxes[boxDecisions] = decisions
	for _, r := range refusals {
		set.addRefusal(r)
	}
	return set
}

// addMessage files a message the set does not hold yet into All, its
// month and its clients' mailboxes; its decisions summary, for an outbound
// one, is appended to decisions, which is returned.
func (set *mailboxSet) addMessage(m *archive.ViewMessage, decisions []*entry) []*entry {
	for _, r := range m.Refused {
		set.sent.Store(r.Ref, m)
	}
	e := &entry{uid: uint32(m.Seq), date: m.Time, seen: seenKey{'a', uint32(m.Seq)}, archived: m}
	set.boxes[boxAll] = append(set.boxes[boxAll], e)
	month := prefixMonth + m.Time.UTC().Format("2006-01")
	set.boxes[month] = append(set.boxes[month], e)
	for _, c := range m.Clients {
		set.boxes[prefixClient+c] = append(set.boxes[prefixClient+c], e)
	}
	set.maxSeq = max(set.maxSeq, m.Seq)
	if m.Direction == archive.Outbound {
		decisions = append(decisions, set.decisionsEntry(m))
		set.decisions[m.Seq] = uint32(m.Updated)
	}
	return decisions
}

func (set *mailboxSet) decisionsEntry(m *archive.ViewMessage) *entry {
	return &entry{uid: uint32(m.Updated), date: m.Time, seen: seenKey{'d', uint32(m.Updated)}, generate: decisionsMessage(set.view, m)}
}

func (set *mailboxSet) addRefusal(r *archive.ViewRefusal) {
	sent := func() *archive.ViewMessage {
		if m, ok := set.sent.Load(r.Ref); ok {
			return m.(*archive.ViewMessage)
		}
		return nil
	}
	set.boxes[boxRefused] = append(set.boxes[boxRefused], &entry{uid: uint32(r.Seq), date: r.Time, seen: seenKey{'r', uint32(r.Seq)}, generate: refusalMessage(set.view, r, sent), kept: &keptBytes{}})
}

// apply makes the set that follows this one with what the view found
// since: new messages and refusals are appended, a message an event
// changed gets a new summary in Decisions (its UID the event's) and its
// old one leaves. It returns nil when the set must be built again (a
// prune took messages out).
func (set *mailboxSet) apply(v *archive.View) *mailboxSet {
	msgs, refusals, cursor, ok := v.Changes(set.cursor)
	if !ok {
		return nil
	}
	if len(msgs) == 0 && len(refusals) == 0 {
		return set
	}
	next := &mailboxSet{cursor: cursor, boxes: maps.Clone(set.boxes), maxSeq: set.maxSeq, decisions: set.decisions, sent: set.sent, view: set.view}
	replaced := map[uint32]bool{}
	var decisions []*entry
	for _, m := range msgs {
		if m.Seq > set.maxSeq {
			decisions = next.addMessage(m, decisions)
			continue
		}
		if old, ok := next.decisions[m.Seq]; ok && old != uint32(m.Updated) {
			replaced[old] = true
			decisions = append(decisions, next.decisionsEntry(m))
			next.decisions[m.Seq] = uint32(m.Updated)
		}
	}
	box := next.boxes[boxDecisions]
	if len(replaced) > 0 {
		box = slices.DeleteFunc(slices.Clone(box), func(e *entry) bool { return replaced[e.uid] })
	}
	sort.Slice(decisions, func(i, j int) bool { return decisions[i].uid < decisions[j].uid })
	next.boxes[boxDecisions] = append(box, decisions...)
	for _, r := range refusals {
		next.addRefusal(r)
	}
	return next
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
