package archive

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"time"
)

// rowOf is the row of the message recorded as seq (rows are in chain
// order); v.mu is held.
func (v *View) rowOf(seq uint64) (int, bool) {
	n := v.rows.len()
	i := sort.Search(n, func(i int) bool { return v.rows.at(i).seq >= seq })
	return i, i < n && v.rows.at(i).seq == seq
}

// listing is what lists a row's message; v.mu is held.
func (v *View) listing(r *viewRow) ViewListing {
	l := ViewListing{Seq: r.seq, Updated: r.updated(), Time: v.rowTime(r), Direction: Inbound,
		Clients: v.clients.sets[r.clients], Size: int64(r.size)}
	if r.flags&rowOutbound != 0 {
		l.Direction = Outbound
	}
	if r.size == sizeSpilled {
		l.Size = v.bigSizes[r.seq]
	}
	return l
}

// rowTime is a row's Time in the zone it was recorded in; v.mu is held.
func (v *View) rowTime(r *viewRow) time.Time {
	t := time.Unix(int64(r.secs), 0)
	if r.zone == 0 {
		return t.UTC()
	}
	loc := v.zones[r.zone]
	if loc == nil {
		loc = time.FixedZone("", int(r.zone)*60)
		v.zones[r.zone] = loc
	}
	return t.In(loc)
}

// Listing is what lists the message recorded as seq; ok is false when the
// view does not hold it (pruned, or never a message).
func (v *View) Listing(seq uint64) (l ViewListing, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	i, ok := v.rowOf(seq)
	if !ok {
		return l, false
	}
	return v.listing(v.rows.at(i)), true
}

// Message is the message recorded as seq with what lists it; View.Details
// adds the rest.
func (v *View) Message(seq uint64) (*ViewMessage, bool) {
	l, ok := v.Listing(seq)
	if !ok {
		return nil, false
	}
	return &ViewMessage{Seq: l.Seq, Time: l.Time, Direction: l.Direction, Clients: l.Clients, Size: l.Size, Updated: l.Updated}, true
}

// Messages returns every message with what lists it, in chain order: for
// small archives and tests (a mailbox reads Changes instead).
func (v *View) Messages() []*ViewMessage {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]*ViewMessage, 0, v.rows.len())
	for i := 0; i < v.rows.len(); i++ {
		l := v.listing(v.rows.at(i))
		out = append(out, &ViewMessage{Seq: l.Seq, Time: l.Time, Direction: l.Direction, Clients: l.Clients, Size: l.Size, Updated: l.Updated})
	}
	return out
}

// SentAs is the message a refused submission went on to be (to the
// recipients not refused), by the refusal's reference.
func (v *View) SentAs(ref string) (*ViewMessage, bool) {
	v.mu.Lock()
	seq, ok := v.sentAs[ref]
	v.mu.Unlock()
	if !ok {
		return nil, false
	}
	return v.Message(seq)
}

// ViewCursor is how far a reader of the view's changes (Changes) has read;
// the zero cursor has read nothing.
type ViewCursor struct {
	gen                    uint64
	started                bool
	rows, events, refusals int
}

// Changes hands on what the view found since c: added gets each message
// new since c, updated each earlier message an event made newer (once per
// event, as it is now), refusal each refusal added; all in chain order.
// They run with the view locked: they must not call the view. ok false:
// messages left the view since (a prune); the reader starts again from
// the zero cursor.
func (v *View) Changes(c ViewCursor, added, updated func(ViewListing), refusal func(*ViewRefusal)) (next ViewCursor, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !c.started {
		c = ViewCursor{gen: v.gen, started: true}
	}
	if c.gen != v.gen || c.rows > v.rows.len() || c.events > v.events.len() || c.refusals > len(v.refusals) {
		return c, false
	}
	for i := c.rows; i < v.rows.len(); i++ {
		added(v.listing(v.rows.at(i)))
	}
	for i := c.events; i < v.events.len(); i++ {
		if e := v.events.at(i); int(e.row) < c.rows {
			updated(v.listing(v.rows.at(int(e.row))))
		}
	}
	for _, r := range v.refusals[c.refusals:] {
		refusal(r)
	}
	return ViewCursor{gen: v.gen, started: true, rows: v.rows.len(), events: v.events.len(), refusals: len(v.refusals)}, true
}

// errNotInView says a message is not (or no longer) in the view.
var errNotInView = errors.New("the message is not in the view (pruned since it was listed?)")

// messageAt reads again the header of the message recorded as seq, and
// lists where the events about it are (newest first).
func (v *View) messageAt(seq uint64) (located, []uint64, error) {
	v.mu.Lock()
	i, ok := v.rowOf(seq)
	if !ok {
		v.mu.Unlock()
		return located{}, nil, errNotInView
	}
	row := *v.rows.at(i)
	var events []uint64
	for e := row.lastEv; e >= 0; e = v.events.at(int(e)).prev {
		events = append(events, v.events.at(int(e)).loc)
	}
	v.mu.Unlock()
	l, err := v.locate(row.loc, seq)
	return l, events, err
}

// locate reads a record's header again where the view found it, and
// checks it is the record it found there.
func (v *View) locate(loc, seq uint64) (located, error) {
	l, _, err := v.files.locate(locSeg(loc), locOff(loc))
	if err == nil && l.h.Seq != seq && seq != 0 {
		err = fmt.Errorf("%s at %d holds record %d, not %d", l.seg, locOff(loc), l.h.Seq, seq)
	}
	return l, err
}

// Details is m with all of its metadata: what its record says (decrypted
// again, or from the cache) and its events, as of m.Updated.
func (v *View) Details(m *ViewMessage) (*ViewMessage, error) {
	key := fmt.Sprintf("%d.%d", m.Seq, m.Updated)
	if d, ok := v.details.get(key); ok {
		return d, nil
	}
	l, events, err := v.messageAt(m.Seq)
	head := &capped{max: maxNamedHeader}
	var metaJSON []byte
	if err == nil {
		_, metaJSON, err = v.files.metadata(l, v.key, head)
	}
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
	d.ID, d.Refused, d.Time = mt.ID, mt.Refused, mt.Time
	d.ViewDetails = &ViewDetails{Account: mt.Account, Sender: mt.Sender, Folder: mt.Folder, From: mt.From, Subject: mt.Subject, MessageID: mt.MessageID,
		Decisions: mt.Decisions, Fired: mt.Fired, Named: namedIn(head.Bytes())}
	for _, loc := range slices.Backward(events) {
		el, err := v.locate(loc, 0)
		if err != nil {
			return nil, fmt.Errorf("record %d: an event about it: %w", m.Seq, err)
		}
		// Newer than asked for, or about another message whose id has the
		// same hash.
		if el.h.Seq > m.Updated || el.h.ID != l.h.ID {
			continue
		}
		ev, err := v.readEvent(el)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", el.h.Seq, err)
		}
		d.Events = append(d.Events, ev)
	}
	v.details.put(key, &d)
	return &d, nil
}

// maxNamedHeader is how much of a message's start the view reads its To
// and Cc fields from: the header limit of a submission.
const maxNamedHeader = 100 << 10

// Body returns a message's bytes as archived.
func (v *View) Body(m *ViewMessage) ([]byte, error) {
	if m == nil {
		return nil, errors.New("no such message")
	}
	key := strconv.FormatUint(m.Seq, 10)
	if b, ok := v.bodies.get(key); ok {
		// A segment pruned since is not served from the cache either.
		v.mu.Lock()
		_, held := v.rowOf(m.Seq)
		v.mu.Unlock()
		if !held {
			v.bodies.remove(key)
			return nil, errNotInView
		}
		if _, err := v.files.file(locSeg(v.locOf(m.Seq))); err != nil {
			v.bodies.remove(key)
			return nil, err
		}
		return b, nil
	}
	// Not under v.mu: readers in several sessions decrypt in parallel.
	l, _, err := v.messageAt(m.Seq)
	if err != nil {
		return nil, err
	}
	body, _, err := v.files.decrypt(l, v.key)
	if err == nil {
		v.bodies.put(key, body)
	}
	return body, err
}

func (v *View) locOf(seq uint64) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if i, ok := v.rowOf(seq); ok {
		return v.rows.at(i).loc
	}
	return 0
}

// dropPruned leaves out of the view the messages and refusals whose
// segment was pruned since they were read: past retention, they are not
// served any more. v.mu is held.
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
	goneNo := map[int64]bool{}
	v.compact(func(loc uint64) bool {
		g, known := goneNo[locSegNo(loc)]
		if !known {
			g = isGone(locSeg(loc))
			goneNo[locSegNo(loc)] = g
		}
		return g
	})
	v.refusals = slices.DeleteFunc(v.refusals, func(r *ViewRefusal) bool { return isGone(r.seg) })
	v.version++
	v.gen++
}

// compact keeps the messages and events whose record is not gone, in
// order, and renumbers what points at their rows. v.mu is held.
func (v *View) compact(gone func(loc uint64) bool) {
	moved := make([]int32, v.rows.len())
	var rows rowChunks[viewRow]
	for i := range moved {
		r := *v.rows.at(i)
		if gone(r.loc) {
			moved[i] = -1
			delete(v.bigSizes, r.seq)
			continue
		}
		moved[i] = int32(rows.len())
		r.lastEv = -1
		rows.append(r)
	}
	var events rowChunks[viewEvent]
	for i := 0; i < v.events.len(); i++ {
		e := *v.events.at(i)
		if moved[e.row] < 0 || gone(e.loc) {
			continue
		}
		e.row = uint32(moved[e.row])
		m := rows.at(int(e.row))
		e.prev, m.lastEv = m.lastEv, int32(events.len())
		events.append(e)
	}
	v.rows, v.events = rows, events
	v.ids.renumber(moved)
	for ref, seq := range v.sentAs {
		if _, ok := v.rowOf(seq); !ok {
			delete(v.sentAs, ref)
		}
	}
}
