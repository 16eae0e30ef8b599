package queue

import (
	"container/heap"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"time"
)

// Message is a queued message as `sealpost queue list` shows it.
type Message struct {
	ID          string    `json:"id"`
	Account     string    `json:"account"`
	Received    time.Time `json:"received"`
	Size        int64     `json:"size"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	Pending     int       `json:"pending_recipients"`
	LastError   string    `json:"last_error,omitempty"`
	Notice      bool      `json:"notice,omitempty"`
	// Dropped: an admin dropped it; it stays only until the archive has
	// recorded that.
	Dropped bool `json:"dropped,omitempty"`
	// HeldUntil: copies to clients wait for the sender's office hours.
	HeldUntil time.Time `json:"held_until,omitzero"`
}

// List returns what is queued, by id.
func (q *Queue) List() []Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Message, 0, len(q.entries))
	for _, e := range q.entries {
		if e.inFlight {
			m := e.shown
			m.Dropped = e.dropped
			out = append(out, m)
		} else {
			out = append(out, describeEntry(e))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// errNoSuchMessage is returned for a queue id (or prefix) that matches nothing.
var errNoSuchMessage = errors.New("no such message in the queue")

func (q *Queue) find(prefix string) (*entry, error) { return findByID(maps.Values(q.entries), prefix) }

// findByID is the one message whose id is, or starts with, prefix: an
// admin types as much of an id as it takes to tell it from the others.
func findByID(entries iter.Seq[*entry], prefix string) (*entry, error) {
	var found *entry
	for e := range entries {
		if strings.HasPrefix(e.meta.ID, prefix) {
			if found != nil {
				return nil, fmt.Errorf("%q matches several messages; give more of the id", prefix)
			}
			found = e
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s: %w", prefix, errNoSuchMessage)
	}
	return found, nil
}

// Retry makes a message due now; prefix is its id or a unique prefix.
func (q *Queue) Retry(prefix string) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, err := q.find(prefix)
	if err != nil {
		return "", err
	}
	if e.inFlight {
		// The attempt under way would schedule the next one by its backoff.
		e.retryNow = true
	} else {
		e.state.NextAttempt = q.now()
		heap.Fix(&q.h, e.index)
	}
	q.poke()
	return e.meta.ID, nil
}

// Drop removes a message from the queue for good (prefix is its id or a
// unique prefix): nothing of it is handed to the provider after Drop returns, and the archive gets the outcomes
// it lacked, then the drop, before the message leaves the spool. An error
// with the id means the message was dropped (it is never sent) but that
// was not recorded or not removed yet.
func (q *Queue) Drop(prefix string) (string, error) {
	q.mu.Lock()
	e, err := q.find(prefix)
	if err != nil {
		q.mu.Unlock()
		return "", err
	}
	id := e.meta.ID
	e.dropped = true
	if e.inFlight {
		// A worker has it: it hands no further copy to the provider and
		// settles the drop when its attempt ends.
		if e.dropWait == nil {
			e.dropWait = &dropWait{done: make(chan struct{})}
		}
		w := e.dropWait
		q.mu.Unlock()
		t := time.NewTimer(dropWaitLimit)
		defer t.Stop()
		select {
		case <-w.done:
			err = w.err
		case <-t.C:
			q.log.Warn("the delivery attempt of a dropped message is still under way: nothing more of it is sent, and the drop is recorded when the attempt ends", "id", id)
			return id, nil
		}
	} else {
		// Taken off the schedule: this call settles it.
		heap.Remove(&q.h, e.index)
		e.shown = describeEntry(e)
		e.inFlight = true
		q.mu.Unlock()
		err = q.settleDrop(e, q.log.With("id", id))
	}
	switch {
	case errors.Is(err, errDropTooLate):
		return id, fmt.Errorf("%s: %w", id, err)
	case err != nil:
		return id, fmt.Errorf("dropped %s: it will not be sent, but %w", id, err)
	}
	return id, nil
}

// heldCount is the number of queued messages still held for an opening.
func (q *Queue) heldCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	now, n := q.now(), 0
	for _, e := range q.entries {
		if e.holdUntil().After(now) {
			n++
		}
	}
	return n
}

// stats is the number of queued messages and when the one waiting
// longest began to wait: a held message waits from its release, so a
// weekend's held mail does not look like a stuck queue.
func (q *Queue) stats() (n int, oldest time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	for _, e := range q.entries {
		since := e.waitingSince(now)
		if h := e.holdUntil(); h.After(now) {
			since = h
		}
		if oldest.IsZero() || since.Before(oldest) {
			oldest = since
		}
	}
	return len(q.entries), oldest
}

// settleDrop ends the turn of a dropped entry (in flight, so its state is
// the caller's): its outcomes not yet in the archive, then the drop naming
// the recipients who never got the message, are written to the archive,
// and only then is it removed. If the archive cannot take them the entry
// stays, never to be sent again, and they are tried again at its next turn
// (after a restart too: state.Dropped). The error says what went wrong.
func (q *Queue) settleDrop(e *entry, log *slog.Logger) error {
	e.markDropped(q.now())
	if err := q.record(e, log); err != nil {
		err = fmt.Errorf("the archive cannot record the drop yet; the message stays in the queue, marked dropped, until it can: %w", err)
		e.state.NextAttempt = q.now().Add(q.opts.RetryMin)
		if serr := e.saveState(); serr != nil {
			err = errors.Join(err, fmt.Errorf("and its state cannot be saved, so a restart would send it: %w", serr))
		}
		log.Error("a dropped message stays in the queue until the archive records the drop; it is not sent", "err", err)
		q.mu.Lock()
		e.inFlight = false
		heap.Push(&q.h, e)
		w := e.dropWait
		e.dropWait = nil
		q.mu.Unlock()
		w.end(err)
		return err
	}
	err := q.remove(e)
	if err != nil {
		err = fmt.Errorf("it cannot be removed from the spool (the next start removes it): %w", err)
		log.Error("cannot remove a dropped message from the spool; it is not sent", "err", err)
	} else {
		log.Info("dropped by an admin")
	}
	q.endDropWait(e, err)
	return err
}

// remove takes an entry in flight out of the spool and the queue. If its
// file stays, its state is saved: a restart then neither sends it again
// nor forgets a drop.
func (q *Queue) remove(e *entry) error {
	err := e.remove()
	if err != nil {
		if serr := e.saveState(); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	q.mu.Lock()
	delete(q.entries, e.meta.ID)
	if e.index >= 0 {
		heap.Remove(&q.h, e.index)
	}
	q.mu.Unlock()
	return err
}

// dropWait is a drop waiting for the turn of the entry it dropped to end.
type dropWait struct {
	done chan struct{}
	err  error
}

func (w *dropWait) end(err error) {
	if w != nil {
		w.err = err
		close(w.done)
	}
}

// endDropWait tells a drop waiting for e how its turn ended.
func (q *Queue) endDropWait(e *entry, err error) {
	q.mu.Lock()
	w := e.dropWait
	e.dropWait = nil
	q.mu.Unlock()
	w.end(err)
}

// errDropTooLate: the drop came while the last copies were being handed
// to the provider.
var errDropTooLate = errors.New("every recipient already had its outcome (delivered, or failed and the sender told) when the drop took effect; nothing was dropped")

// dropWaitLimit bounds how long a drop waits for the attempt under way
// (at most the copy being handed to the provider, then the archive); it is
// below the control socket client's timeout.
const dropWaitLimit = 20 * time.Second
