package archive

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
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
//
// The view keeps, for every message, only what lists it (Seq, ID, Time,
// Direction, Clients, Size, Refused, Updated): the rest of its metadata
// (ViewDetails) is nil in what Messages and Changes return, and filled in
// by View.Details, which decrypts the record again (a bounded cache keeps
// the latest).
type ViewMessage struct {
	Seq       uint64 // the record's place in the chain: stable, increasing
	ID        string
	Time      time.Time
	Direction Direction
	Clients   []string // the clients it is from or to
	Size      int64
	// Refused are the recipients refused at RCPT in its submission.
	Refused []RefusedRecipient
	// Updated is the newest record about it (its own, or its newest
	// event's).
	Updated uint64
	*ViewDetails
	loc    viewLoc
	events []viewLoc // the event records about it, in chain order
}

// ViewDetails is what View.Details adds to a message.
type ViewDetails struct {
	Account, Sender, Folder  string
	From, Subject, MessageID string // from its header, as archived
	Decisions                []record.Decision
	Fired                    []record.RuleHit
	// Named are the addresses its To and Cc fields name (an outbound
	// message's header may name recipients who were never sent to).
	Named []NamedAddress
	// Events are what became of it, in chain order, as of Updated.
	Events []Event
}

// viewLoc is where a record's payload is, and what its header says that
// decrypting it checks: a located without the rest of the header.
type viewLoc struct {
	seg            string
	seq            uint64
	payOff, payLen int64
	psha           [32]byte
	id             string
}

// newViewLoc keeps id, the message's id as the view already holds it, in
// place of the header's copy of it (a million messages: tens of MB).
func newViewLoc(l located, id string) viewLoc {
	c := viewLoc{seg: l.seg, seq: l.h.Seq, payOff: l.payOff, payLen: l.payLen, id: id}
	hex.Decode(c.psha[:], []byte(l.h.PSHA))
	return c
}

func (c viewLoc) located() located {
	return located{seg: c.seg, h: header{Seq: c.seq, PSHA: hex.EncodeToString(c.psha[:]), ID: c.id}, payOff: c.payOff, payLen: c.payLen}
}

// ViewRefusal is a refused recipient or message as the record keeps it.
type ViewRefusal struct {
	Seq uint64
	RefusalRecord
	seg string
}

// View is a read-only index of the archive's messages for a reader with the
// private key (the IMAP view). Only what lists a message stays in memory;
// its other metadata and its bytes are decrypted again when asked for,
// the newest of them kept in bounded caches.
type View struct {
	dir string
	key openpgp.EntityList

	refreshMu sync.Mutex // one Refresh at a time; guards pos
	pos       indexRow   // the last record read (seq 0: none yet)

	mu         sync.Mutex
	messages   []*ViewMessage // in chain order
	byID       map[string]int // message id -> index in messages
	refusals   []*ViewRefusal // in chain order
	version    uint64         // grows with every change a Refresh finds
	unreadable []uint64       // records the key does not open
	// unreadableMessages counts the message records among them.
	unreadableMessages int
	files              *openSegments
	// changed lists, in order, the places in messages of each message
	// added or changed by an event since gen began; gen grows when a prune
	// took messages out (places move).
	changed []int
	gen     uint64
	holding map[string]bool   // the segments the view's messages and refusals are in
	clients map[string]string // one copy of each client address

	details *lru[*ViewMessage]
	bodies  *lru[[]byte]
}

// ViewOptions size what a view keeps.
type ViewOptions struct {
	// DetailsCache is how many messages' full metadata (View.Details) are
	// kept decrypted (default 1000).
	DetailsCache int
	// BodyCacheBytes is how many octets of message bodies are kept
	// decrypted (default 32 MiB): a mail client fetches a message's
	// header and then its body.
	BodyCacheBytes int64
	// Background returns from OpenViewWith once the first messages the key
	// opens are read; LoadAll reads the rest.
	Background bool
}

// OpenView reads the archive in dir with its private key.
func OpenView(dir string, key openpgp.EntityList) (*View, error) {
	return OpenViewWith(dir, key, ViewOptions{})
}

// OpenViewWith reads the archive in dir with its private key: all of it,
// or with o.Background the first records, until a message the key opens.
func OpenViewWith(dir string, key openpgp.EntityList, o ViewOptions) (*View, error) {
	if o.DetailsCache <= 0 {
		o.DetailsCache = 1000
	}
	if o.BodyCacheBytes <= 0 {
		o.BodyCacheBytes = 32 << 20
	}
	v := &View{dir: dir, key: key, byID: map[string]int{}, holding: map[string]bool{}, clients: map[string]string{},
		files:   &openSegments{dir: dir, files: map[string]*os.File{}},
		details: newLRU[*ViewMessage](int64(o.DetailsCache), func(*ViewMessage) int64 { return 1 }),
		bodies:  newLRU[[]byte](o.BodyCacheBytes, func(b []byte) int64 { return int64(len(b)) })}
	for {
		more, err := v.refresh(context.Background(), viewChunk)
		if err != nil {
			v.Close()
			return nil, err
		}
		v.mu.Lock()
		readable := len(v.messages) > 0
		v.mu.Unlock()
		if !more || o.Background && readable {
			break
		}
	}
	if n := v.unreadableMessages; n > 0 && len(v.messages) == 0 {
		v.Close()
		return nil, fmt.Errorf("the key opens none of the archive's %d messages: is it the archive's private key?", n)
	}
	return v, nil
}

// viewChunk is how many records a refresh decrypts before it publishes
// them: a view of a large archive fills while it is served.
const viewChunk = 2048

// LoadAll reads what OpenViewWith left for later (Background), a chunk at
// a time, until the view has every record or ctx ends.
func (v *View) LoadAll(ctx context.Context) error {
	for {
		more, err := v.refresh(ctx, viewChunk)
		if err != nil || !more {
			return err
		}
	}
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

// viewRecord is a record read for the view: a message's listing, an
// event or a refusal.
type viewRecord struct {
	size    int64
	meta    messageMeta
	event   Event
	refusal RefusalRecord
	err     error
}

// Refresh adds the records written since the last look (the relay may be
// writing while the view is read): messages, what became of them, refusals.
func (v *View) Refresh() error {
	for {
		more, err := v.refresh(context.Background(), viewChunk)
		if err != nil || !more {
			return err
		}
	}
}

// TryRefresh reads up to a chunk of new records, unless a refresh is under
// way (the view loading in the background, or another session's look):
// then it returns at once, and what that one finds shows in Changes.
func (v *View) TryRefresh() error {
	if !v.refreshMu.TryLock() {
		return nil
	}
	defer v.refreshMu.Unlock()
	_, err := v.refreshLocked(context.Background(), viewChunk)
	return err
}

var errChunkRead = errors.New("chunk read")

// refresh reads at most n records after the last one read, decrypting them
// on every core, and publishes them; more says there are others.
func (v *View) refresh(ctx context.Context, n int) (more bool, err error) {
	v.refreshMu.Lock()
	defer v.refreshMu.Unlock()
	return v.refreshLocked(ctx, n)
}

func (v *View) refreshLocked(ctx context.Context, n int) (more bool, err error) {
	v.mu.Lock()
	v.dropPruned()
	v.mu.Unlock()
	var fresh []located
	last := v.pos
	err = walkRows(ctx, v.dir, v.pos.seg, v.pos.end, n, func(rows []indexRow) error {
		for _, r := range rows {
			switch r.h.Kind {
			case kindMessage, kindEvent, kindRefusal:
				fresh = append(fresh, located{seg: r.seg, h: r.h, payOff: r.end - 32 - r.h.PLen, payLen: r.h.PLen})
			}
		}
		last = rows[len(rows)-1]
		if len(rows) == n {
			return errChunkRead
		}
		return nil
	})
	more = errors.Is(err, errChunkRead)
	if err != nil && !more {
		return false, err
	}
	err = inOrder(ctx, len(fresh), func(i int) viewRecord { return v.read(fresh[i]) },
		func(i int, r viewRecord) error {
			v.mu.Lock()
			v.add(fresh[i], &r)
			v.mu.Unlock()
			return nil
		})
	if err != nil {
		return false, err
	}
	v.pos = last
	return more, nil
}

// read decrypts one record; a message's body streams past, only its
// metadata and size are kept.
func (v *View) read(l located) viewRecord {
	var r viewRecord
	switch l.h.Kind {
	case kindMessage:
		var metaJSON []byte
		if r.size, metaJSON, r.err = v.files.metadata(l, v.key, io.Discard); r.err != nil {
			return r
		}
		if r.err = sameMessage(l, metaJSON); r.err != nil {
			return r
		}
		r.err = json.Unmarshal(metaJSON, &r.meta)
	case kindEvent:
		r.event, r.err = v.readEvent(l)
	case kindRefusal:
		_, metaJSON, err := v.files.decrypt(l, v.key)
		if r.err = err; err == nil {
			r.err = json.Unmarshal(metaJSON, &r.refusal)
		}
	}
	return r
}

func (v *View) readEvent(l located) (Event, error) {
	var ev Event
	_, metaJSON, err := v.files.decrypt(l, v.key)
	if err == nil {
		err = json.Unmarshal(metaJSON, &ev)
	}
	if err == nil && ev.MessageID != l.h.ID {
		err = fmt.Errorf("its metadata names message %s, its header %s", ev.MessageID, l.h.ID)
	}
	return ev, err
}

// add puts a record read into the view, in chain order.
func (v *View) add(l located, r *viewRecord) {
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
		clients := clientsOf(mt)
		for i, c := range clients {
			if have, ok := v.clients[c]; ok {
				clients[i] = have
			} else {
				v.clients[c] = c
			}
		}
		m := &ViewMessage{Seq: l.h.Seq, ID: mt.ID, Time: mt.Time, Direction: mt.Direction, Size: r.size, Clients: clients,
			Refused: mt.Refused, Updated: l.h.Seq}
		m.loc = newViewLoc(l, m.ID)
		v.byID[m.ID] = len(v.messages)
		v.changed = append(v.changed, len(v.messages))
		v.messages = append(v.messages, m)
	case kindEvent:
		i, ok := v.byID[r.event.MessageID]
		if !ok {
			return // about a message pruned, or one the key does not open
		}
		m := *v.messages[i]
		m.events = append(m.events[:len(m.events):len(m.events)], newViewLoc(l, m.ID))
		m.Updated = l.h.Seq
		v.messages[i] = &m
		v.changed = append(v.changed, i)
	case kindRefusal:
		v.refusals = append(v.refusals, &ViewRefusal{Seq: l.h.Seq, RefusalRecord: r.refusal, seg: l.seg})
	}
}

// Details is m with all of its metadata: what its record says (decrypted
// again, or from the cache) and its events, as of m.Updated.
func (v *View) Details(m *ViewMessage) (*ViewMessage, error) {
	key := fmt.Sprintf("%d.%d", m.Seq, m.Updated)
	if d, ok := v.details.get(key); ok {
		return d, nil
	}
	l := m.loc.located()
	head := &capped{max: maxNamedHeader}
	_, metaJSON, err := v.files.metadata(l, v.key, head)
	if err == nil {
		err = sameMessage(l, metaJSON)
	}
	var mt messageMeta
	if err == nil {
		err = json.Unmarshal(metaJSON, &mt)
	}
	if err != nil {
		return nil, fmt.Errorf("record %d: %w", m.Seq, err)
	}
	d := *m
	d.ViewDetails = &ViewDetails{Account: mt.Account, Sender: mt.Sender, Folder: mt.Folder, From: mt.From, Subject: mt.Subject, MessageID: mt.MessageID,
		Decisions: mt.Decisions, Fired: mt.Fired, Named: namedIn(head.Bytes())}
	for _, e := range m.events {
		ev, err := v.readEvent(e.located())
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", e.seq, err)
		}
		d.Events = append(d.Events, ev)
	}
	v.details.put(key, &d)
	return &d, nil
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
	key := strconv.FormatUint(m.Seq, 10)
	if b, ok := v.bodies.get(key); ok {
		// A segment pruned since is not served from the cache either.
		if _, err := v.files.file(m.loc.seg); err != nil {
			v.bodies.remove(key)
			return nil, err
		}
		return b, nil
	}
	// Not under v.mu: readers in several sessions decrypt in parallel.
	body, _, err := v.files.decrypt(m.loc.located(), v.key)
	if err == nil {
		v.bodies.put(key, body)
	}
	return body, err
}
