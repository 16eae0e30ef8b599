package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/record"
)

// ViewMessage is one archived message as a reader of the record sees it:
// what its record says, and what the records after it say became of it.
// A ViewMessage is never changed once handed out: a later event makes a
// new one, with the same Seq and a higher Updated.
type ViewMessage struct {
	Seq       uint64 // the record's place in the chain: stable, increasing
	ID        string
	Time      time.Time
	Direction Direction
	Clients   []string // the clients it is from or to
	Size      int64

	Account, Sender, Folder  string
	From, Subject, MessageID string // from its header, as archived
	Decisions                []record.Decision
	Fired                    []record.RuleHit
	// Named are the addresses its To and Cc fields name (an outbound
	// message's header may name recipients who were never sent to).
	Named []NamedAddress
	// Refused are the recipients refused at RCPT in its submission.
	Refused []RefusedRecipient
	// Events are what became of it, in chain order; Updated is the newest
	// record about it (its own, or its newest event's).
	Events  []Event
	Updated uint64
	loc     located
}

// ViewRefusal is a refused recipient or message as the record keeps it.
type ViewRefusal struct {
	Seq uint64
	RefusalRecord
	seg string
}

// View is a read-only index of the archive's messages for a reader with the
// private key (the IMAP view). Only metadata stays in memory; a message's
// bytes are decrypted again when asked for.
type View struct {
	dir string
	key openpgp.EntityList

	mu         sync.Mutex
	messages   []*ViewMessage // in chain order
	byID       map[string]int // message id -> index in messages
	refusals   []*ViewRefusal // in chain order
	maxSeq     uint64
	version    uint64           // grows with every change a Refresh finds
	seen       map[string]int64 // per segment, the end of the records already read
	unreadable []uint64         // records the key does not open
	// unreadableMessages counts the message records among them.
	unreadableMessages int
	files              *openSegments
	// changed lists, in order, the places in messages of each message
	// added or changed by an event since gen began; gen grows when a prune
	// took messages out (places move).
	changed []int
	gen     uint64
	holding map[string]bool // the segments the view's messages and refusals are in
}

// ViewCursor is how far a reader of the view's changes (Changes) has read.
type ViewCursor struct {
	gen      uint64
	changed  int
	refusals int
}

// Snapshot returns the messages and refusals in chain order, and the
// cursor Changes goes on from.
func (v *View) Snapshot() ([]*ViewMessage, []*ViewRefusal, ViewCursor) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]*ViewMessage(nil), v.messages...), append([]*ViewRefusal(nil), v.refusals...),
		ViewCursor{gen: v.gen, changed: len(v.changed), refusals: len(v.refusals)}
}

// Changes returns what Refresh found since c: the messages added or
// changed (each once, as it is now, in the order of their newest change)
// and the refusals added. ok false: messages left the view since (a
// prune); the reader starts again from Snapshot.
func (v *View) Changes(c ViewCursor) (msgs []*ViewMessage, refusals []*ViewRefusal, next ViewCursor, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if c.gen != v.gen || c.changed > len(v.changed) || c.refusals > len(v.refusals) {
		return nil, nil, c, false
	}
	places := v.changed[c.changed:]
	last := make(map[int]int, len(places))
	for i, p := range places {
		last[p] = i
	}
	for i, p := range places {
		if last[p] == i {
			msgs = append(msgs, v.messages[p])
		}
	}
	refusals = append(refusals, v.refusals[c.refusals:]...)
	return msgs, refusals, ViewCursor{gen: v.gen, changed: len(v.changed), refusals: len(v.refusals)}, true
}

// OpenView reads the archive in dir with its private key.
func OpenView(dir string, key openpgp.EntityList) (*View, error) {
	v := &View{dir: dir, key: key, byID: map[string]int{}, holding: map[string]bool{}, files: &openSegments{dir: dir, files: map[string]*os.File{}}}
	if err := v.Refresh(); err != nil {
		v.Close()
		return nil, err
	}
	if n := v.unreadableMessages; n > 0 && len(v.messages) == 0 {
		v.Close()
		return nil, fmt.Errorf("the key opens none of the archive's %d messages: is it the archive's private key?", n)
	}
	return v, nil
}

// Unreadable lists the records (by sequence number) that the key did not
// open: records from before a change of archive key, or damaged ones
// (sealpost archive verify tells which). They are left out of the view.
func (v *View) Unreadable() []uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]uint64(nil), v.unreadable...)
}

// Version grows whenever a Refresh finds something new (or a prune took
// something away): what was built from the view before is still current
// while it stays the same.
func (v *View) Version() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.version
}

// Close releases the open segment files.
func (v *View) Close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.files.close()
}

// viewRecord is a record read for the view: a message's metadata and
// header, an event or a refusal.
type viewRecord struct {
	size    int64
	meta    messageMeta
	named   []NamedAddress
	event   Event
	refusal RefusalRecord
	err     error
}

// Refresh adds the records written since the last look (the relay may be
// writing while the view is read): messages, what became of them, refusals.
func (v *View) Refresh() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	var fresh []located
	seen, err := walkFrom(v.dir, v.seen, func(l located) {
		switch l.h.Kind {
		case kindMessage, kindEvent, kindRefusal:
			if l.h.Seq > v.maxSeq {
				fresh = append(fresh, l)
			}
		}
	})
	if err != nil {
		return err
	}
	v.seen = seen
	v.dropPruned()
	return inOrder(context.Background(), len(fresh), func(i int) viewRecord { return v.read(fresh[i]) },
		func(i int, r viewRecord) error { v.add(fresh[i], &r); return nil })
}

// read decrypts one record; a message's body streams past, only its header
// and metadata are kept.
func (v *View) read(l located) viewRecord {
	var r viewRecord
	switch l.h.Kind {
	case kindMessage:
		head := &capped{max: maxNamedHeader}
		var metaJSON []byte
		if r.size, metaJSON, r.err = v.files.metadata(l, v.key, head); r.err != nil {
			return r
		}
		if r.err = sameMessage(l, metaJSON); r.err != nil {
			return r
		}
		r.err = json.Unmarshal(metaJSON, &r.meta)
		r.named = namedIn(head.Bytes())
	case kindEvent:
		_, metaJSON, err := v.files.decrypt(l, v.key)
		if r.err = err; err == nil {
			r.err = json.Unmarshal(metaJSON, &r.event)
		}
		if r.err == nil && r.event.MessageID != l.h.ID {
			r.err = fmt.Errorf("its metadata names message %s, its header %s", r.event.MessageID, l.h.ID)
		}
	case kindRefusal:
		_, metaJSON, err := v.files.decrypt(l, v.key)
		if r.err = err; err == nil {
			r.err = json.Unmarshal(metaJSON, &r.refusal)
		}
	}
	return r
}

// add puts a record read into the view, in chain order.
func (v *View) add(l located, r *viewRecord) {
	v.maxSeq = l.h.Seq
	v.version++
	if r.err != nil {
		v.unreadable = append(v.unreadable, l.h.Seq)
		if l.h.Kind == kindMessage {
			v.unreadableMessages++
		}
		return
	}
	if l.h.Kind == kindMessage || l.h.Kind == kindRefusal {
		v.holding[l.seg] = true
	}
	switch l.h.Kind {
	case kindMessage:
		mt := &r.meta
		m := &ViewMessage{Seq: l.h.Seq, ID: mt.ID, Time: mt.Time, Direction: mt.Direction, Size: r.size, Clients: clientsOf(mt),
			Account: mt.Account, Sender: mt.Sender, Folder: mt.Folder, From: mt.From, Subject: mt.Subject, MessageID: mt.MessageID,
			Decisions: mt.Decisions, Fired: mt.Fired, Named: r.named, Refused: mt.Refused, Updated: l.h.Seq, loc: l}
		v.byID[m.ID] = len(v.messages)
		v.changed = append(v.changed, len(v.messages))
		v.messages = append(v.messages, m)
	case kindEvent:
		i, ok := v.byID[r.event.MessageID]
		if !ok {
			return // about a message pruned, or one the key does not open
		}
		m := *v.messages[i]
		m.Events = append(m.Events[:len(m.Events):len(m.Events)], r.event)
		m.Updated = l.h.Seq
		v.messages[i] = &m
		v.changed = append(v.changed, i)
	case kindRefusal:
		v.refusals = append(v.refusals, &ViewRefusal{Seq: l.h.Seq, RefusalRecord: r.refusal, seg: l.seg})
	}
}

// maxNamedHeader is how much of a message's start the view reads its To
// and Cc fields from: the header limit of a submission.
const maxNamedHeader = 100 << 10

// dropPruned leaves out of the view the messages and refusals whose
// segment was pruned since they were indexed: past retention, they are not
// served any more.
func (v *View) dropPruned() {
	gone := map[string]bool{}
	isGone := func(seg string) bool {
		if _, known := gone[seg]; !known {
			_, err := os.Stat(filepath.Join(v.dir, seg))
			gone[seg] = errors.Is(err, os.ErrNotExist)
		}
		return gone[seg]
	}
	anyGone := false
	for seg := range v.holding {
		if isGone(seg) {
			anyGone = true
			delete(v.holding, seg)
		}
	}
	if !anyGone {
		return // the usual case: no message is looked at
	}
	before := v.version
	kept := v.messages[:0]
	for _, m := range v.messages {
		if !isGone(m.loc.seg) {
			kept = append(kept, m)
		}
	}
	clear(v.messages[len(kept):])
	if len(kept) != len(v.messages) {
		v.version++
		clear(v.byID)
		for i, m := range kept {
			v.byID[m.ID] = i
		}
	}
	v.messages = kept
	keptR := v.refusals[:0]
	for _, r := range v.refusals {
		if !isGone(r.seg) {
			keptR = append(keptR, r)
		}
	}
	clear(v.refusals[len(keptR):])
	if len(keptR) != len(v.refusals) || v.version != before {
		v.version++
		// Places moved: readers of Changes start again.
		v.gen++
		v.changed = nil
	}
	v.refusals = keptR
	for seg, g := range gone {
		if g {
			delete(v.seen, seg)
		}
	}
}

// clientsOf lists the clients a message is from or to: the sender of an
// inbound message, and the recipients of an outbound one that got it
// encrypted, sealed or by consent (internal recipients are colleagues).
func clientsOf(m *messageMeta) []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		n, err := addr.Normalize(a)
		if err == nil && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if m.Direction == Inbound {
		add(m.Sender)
		return out
	}
	for _, d := range m.Decisions {
		if d.Protection == record.Encrypted || d.Protection == record.Sealed || d.Protection == record.Consented {
			add(d.Address)
		}
	}
	sort.Strings(out)
	return out
}

// Messages returns the messages in chain order.
func (v *View) Messages() []*ViewMessage {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]*ViewMessage(nil), v.messages...)
}

// Refusals returns the refusals in chain order.
func (v *View) Refusals() []*ViewRefusal {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]*ViewRefusal(nil), v.refusals...)
}

// Body returns a message's bytes as archived.
func (v *View) Body(m *ViewMessage) ([]byte, error) {
	if m == nil {
		return nil, errors.New("no such message")
	}
	// Not under v.mu: readers in several sessions decrypt in parallel.
	body, _, err := v.files.decrypt(m.loc, v.key)
	return body, err
}
