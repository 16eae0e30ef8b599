package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
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
// A ViewMessage is never changed once handed out.
//
// View.Message fills in what lists a message (Seq, Time, Direction,
// Clients, Size, Updated); View.Details decrypts the record again for the
// rest (ID, Refused, ViewDetails), as of Updated.
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
}

// ViewListing is what lists a message in a mailbox, handed out without
// copying anything the view keeps: Clients is shared and not to be
// changed.
type ViewListing struct {
	Seq, Updated uint64
	Time         time.Time
	Direction    Direction
	Clients      []string // sorted
	Size         int64
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

// ViewRefusal is a refused recipient or message as the record keeps it.
type ViewRefusal struct {
	Seq uint64
	RefusalRecord
	seg string
}

// View is a read-only index of the archive's messages for a reader with the
// private key (the IMAP view). Only what lists a message stays in memory,
// as a row of numbers (viewrows.go); its other metadata and its bytes are
// decrypted again when asked for, the newest of them kept in bounded
// caches. Nothing decrypted is written anywhere.
type View struct {
	dir string
	key openpgp.EntityList

	refreshMu sync.Mutex  // one Refresh at a time; guards pos and stamp
	pos       indexRow    // the last record read (seq 0: none yet)
	stamp     folderStamp // the archive as the last look that read to its end found it

	mu       sync.Mutex
	rows     rowChunks[viewRow]   // the messages, in chain order
	events   rowChunks[viewEvent] // the events about them, in chain order
	bigSizes map[uint64]int64     // seq -> size, for messages of 4 GiB or more
	ids      *idIndex
	clients  *clientSets
	zones    map[int16]*time.Location
	// sentAs finds the message a refusal's submission became: ref -> seq.
	sentAs     map[string]uint64
	refusals   []*ViewRefusal // in chain order
	version    uint64         // grows with every change a Refresh finds
	unreadable []uint64       // records the key does not open
	// unreadableMessages counts the message records among them.
	unreadableMessages int
	files              *openSegments
	// gen grows when a prune took messages out: rows moved, and readers
	// of Changes start again.
	gen     uint64
	holding map[string]bool // the segments the view's messages and refusals are in

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
	v := &View{dir: dir, key: key, holding: map[string]bool{}, bigSizes: map[uint64]int64{}, sentAs: map[string]uint64{},
		ids: newIDIndex(), clients: newClientSets(), zones: map[int16]*time.Location{},
		files:   &openSegments{dir: dir, files: map[string]*os.File{}},
		details: newLRU[*ViewMessage](int64(o.DetailsCache), func(*ViewMessage) int64 { return 1 }),
		bodies:  newLRU[[]byte](o.BodyCacheBytes, func(b []byte) int64 { return int64(len(b)) })}
	for {
		more, err := v.refresh(context.Background(), viewChunk)
		if err != nil {
			v.Close()
			return nil, err
		}
		readable := v.Len() > 0
		if !more || o.Background && readable {
			break
		}
	}
	if n := v.unreadableMessages; n > 0 && v.Len() == 0 {
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

// Len is how many messages the view holds.
func (v *View) Len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.rows.len()
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
	stamp, unchanged := v.unchanged()
	if unchanged {
		return false, nil
	}
	v.mu.Lock()
	v.dropPruned()
	v.mu.Unlock()
	var fresh []indexRow
	last := v.pos
	err = walkRows(ctx, v.dir, v.pos.seg, v.pos.end, n, func(rows []indexRow) error {
		for _, r := range rows {
			switch r.h.Kind {
			case kindMessage, kindEvent, kindRefusal:
				fresh = append(fresh, r)
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
	err = inOrder(ctx, len(fresh), func(i int) viewRecord { return v.read(rowLocated(fresh[i])) },
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
	if !more {
		// A folder changed within the last second could change again
		// with the same time (timestamps are as coarse as the kernel's
		// tick): only one that has settled is trusted next time.
		stamp.settled = time.Since(stamp.folder) > time.Second
		v.stamp = stamp
	}
	return more, nil
}

// folderStamp says what a look at the archive found: when its folder last
// changed (a segment added, pruned or moved aside), how long the segment
// the view read last was, and the one after it (a writer opens the next
// segment when it closes one: -1 while there is none).
type folderStamp struct {
	folder            time.Time
	lastLen, afterLen int64
	settled           bool
}

// unchanged tells, with three stat calls, whether anything was written,
// added or removed since the view last read everything there was: most
// looks (a mail client's NOOP every few seconds) find nothing, and then
// cost nothing that grows with the archive. refreshMu is held.
func (v *View) unchanged() (folderStamp, bool) {
	s := folderStamp{afterLen: -1}
	fi, err := os.Stat(v.dir)
	if err != nil || v.pos.seg == "" {
		return s, false
	}
	s.folder = fi.ModTime()
	if fi, err = os.Stat(filepath.Join(v.dir, v.pos.seg)); err != nil {
		return s, false
	}
	s.lastLen = fi.Size()
	if fi, err = os.Stat(filepath.Join(v.dir, segName(segNumber(v.pos.seg)+1))); err == nil {
		s.afterLen = fi.Size()
	}
	s.settled = v.stamp.settled
	return s, s.settled && s.folder.Equal(v.stamp.folder) && s.lastLen == v.stamp.lastLen && s.afterLen == v.stamp.afterLen
}

func rowLocated(r indexRow) located {
	return located{seg: r.seg, h: r.h, payOff: r.end - 32 - r.h.PLen, payLen: r.h.PLen}
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
func (v *View) add(at indexRow, r *viewRecord) {
	v.version++
	h := &at.h
	if r.err != nil {
		v.unreadable = append(v.unreadable, h.Seq)
		if h.Kind == kindMessage {
			v.unreadableMessages++
		}
		return
	}
	if h.Kind == kindMessage || h.Kind == kindRefusal {
		v.holding[at.seg] = true
	}
	switch h.Kind {
	case kindMessage:
		mt := &r.meta
		row := viewRow{seq: h.Seq, loc: segLoc(at.seg, at.off), secs: uint32(min(max(mt.Time.Unix(), 0), math.MaxUint32)),
			zone: zoneMinutes(mt.Time), lastEv: -1, clients: v.clients.set(clientsOf(mt))}
		if mt.Direction == Outbound {
			row.flags |= rowOutbound
		}
		row.size = uint32(min(r.size, sizeSpilled))
		if row.size == sizeSpilled {
			v.bigSizes[h.Seq] = r.size
		}
		for _, rr := range mt.Refused {
			if rr.Ref != "" {
				v.sentAs[rr.Ref] = h.Seq
			}
		}
		v.ids.add(mt.ID, uint32(v.rows.len()))
		v.rows.append(row)
	case kindEvent:
		i, ok := v.ids.find(r.event.MessageID)
		if !ok {
			return // about a message pruned, or one the key does not open
		}
		m := v.rows.at(int(i))
		v.events.append(viewEvent{loc: segLoc(at.seg, at.off), row: i, prev: m.lastEv})
		m.lastEv = int32(v.events.len() - 1)
		m.newer = uint32(min(h.Seq-m.seq, math.MaxUint32))
	case kindRefusal:
		v.refusals = append(v.refusals, &ViewRefusal{Seq: h.Seq, RefusalRecord: r.refusal, seg: at.seg})
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

// Refusals returns the refusals in chain order.
func (v *View) Refusals() []*ViewRefusal {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]*ViewRefusal(nil), v.refusals...)
}
