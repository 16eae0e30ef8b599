package queue

import (
	"slices"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// Held copies: a copy the rules held outside its sender's office hours
// (rules.Copy.HoldUntil, in the spool file's metadata, so a restart keeps
// it) is not handed to the provider before its release: HoldUntil plus
// the entry's place among the messages held until the same opening, times
// releaseSpacing, so that a night's mail reaches the provider spread over
// the first minutes rather than at once. The place is not stored: each
// start gives it again, in the order of the messages' ids (their arrival).
// The hold is an instant, so a clock change of the zone or of the machine
// moves nothing: the scheduler looks at the clock at least every
// clockRecheck.
const (
	releaseSpacing = 3 * time.Second
	clockRecheck   = 20 * time.Second
)

// copyOf is the copy a recipient's state belongs to: copies may share a
// file (a held part and the rest), so the recipient decides.
func (e *entry) copyOf(r rcptState) rules.Copy {
	for _, c := range e.meta.Copies {
		if c.Name == r.Copy && slices.Contains(c.Recipients, r.Recipient) {
			return c
		}
	}
	return rules.Copy{Name: r.Copy}
}

// releaseAt is when copy c may go: zero for a copy never held.
func (e *entry) releaseAt(c rules.Copy) time.Time {
	if c.HoldUntil.IsZero() {
		return time.Time{}
	}
	return c.HoldUntil.Add(e.spread)
}

func (e *entry) heldAt(c rules.Copy, now time.Time) bool {
	r := e.releaseAt(c)
	return !r.IsZero() && now.Before(r)
}

// pendingReady are the recipients still pending whose copy is not held.
func (e *entry) pendingReady(now time.Time) []rcptState {
	var p []rcptState
	for _, r := range e.pending() {
		if !e.heldAt(e.copyOf(r), now) {
			p = append(p, r)
		}
	}
	return p
}

// nextRelease is the earliest release of a copy still held with
// recipients pending.
func (e *entry) nextRelease(now time.Time) (time.Time, bool) {
	var next time.Time
	for _, r := range e.pending() {
		c := e.copyOf(r)
		if e.heldAt(c, now) && (next.IsZero() || e.releaseAt(c).Before(next)) {
			next = e.releaseAt(c)
		}
	}
	return next, !next.IsZero()
}

// holdUntil is the opening the message's held copies wait for (zero:
// none); a message holds its copies until one opening.
func (e *entry) holdUntil() time.Time {
	for _, c := range e.meta.Copies {
		if !c.HoldUntil.IsZero() {
			return c.HoldUntil
		}
	}
	return time.Time{}
}

// waitingSince is when the message began to wait for the provider: its
// arrival, or the opening its copies were held until once that passed.
// The delay warning and the lifetime count from it: mail held over a long
// weekend has not been trying for days.
func (e *entry) waitingSince(now time.Time) time.Time {
	if h := e.holdUntil(); !h.IsZero() && h.After(e.meta.Received) && !h.After(now) {
		return h
	}
	return e.meta.Received
}

// heldEvent is the record that the message's held copies wait, dated when
// it was accepted; none for a message that holds nothing.
func heldEvent(m entryMeta) []archive.Event {
	var rcpts []string
	var until time.Time
	for _, c := range m.Copies {
		if !c.HoldUntil.IsZero() {
			rcpts = append(rcpts, c.Recipients...)
			until = c.HoldUntil
		}
	}
	if len(rcpts) == 0 {
		return nil
	}
	return []archive.Event{{MessageID: m.ID, Time: m.Received, Kind: archive.EventKind(record.EventHeld), Recipients: rcpts,
		Reply: "held outside the sender's office hours until " + until.UTC().Format(time.RFC3339)}}
}

// released notes, the first time a held copy is handed to the provider,
// that its hold ended, and returns events with the record of it.
func (e *entry) released(c rules.Copy, rcpts []string, now time.Time, events []archive.Event) []archive.Event {
	if c.HoldUntil.IsZero() || slices.Contains(e.state.Released, c.Name) {
		return events
	}
	e.state.Released = append(e.state.Released, c.Name)
	return append(events, archive.Event{MessageID: e.meta.ID, Time: now, Kind: archive.EventKind(record.EventReleased),
		Recipients: rcpts, Reply: "office hours opened at " + c.HoldUntil.UTC().Format(time.RFC3339) + "; released"})
}

// placeHeld gives an entry with held copies its place among those held
// until the same opening (its spread), and, when nothing of it may go
// before, its next attempt at its release. The queue's mutex is held.
func (q *Queue) placeHeld(e *entry) {
	h := e.holdUntil()
	if h.IsZero() {
		return
	}
	if q.releaseSlots == nil {
		q.releaseSlots = map[int64]int{}
	}
	key := h.Unix()
	e.spread = time.Duration(q.releaseSlots[key]) * releaseSpacing
	q.releaseSlots[key]++
	now := q.now()
	if len(e.pendingReady(now)) > 0 || len(e.state.Unrecorded) > 0 {
		return
	}
	if rel, ok := e.nextRelease(now); ok && e.state.NextAttempt.Before(rel) {
		e.state.NextAttempt = rel
	}
}

// heldUntilShown is what queue list says the message waits for: the
// opening, while a copy is still held.
func (e *entry) heldUntilShown() time.Time {
	for _, r := range e.pending() {
		if c := e.copyOf(r); !c.HoldUntil.IsZero() && !slices.Contains(e.state.Released, c.Name) {
			return c.HoldUntil
		}
	}
	return time.Time{}
}
