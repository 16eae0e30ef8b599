package relay

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// QueueOptions are the delivery schedule's settings.
type QueueOptions struct {
	Workers      int
	Lifetime     time.Duration // bounce what is still undelivered after this long
	DelayWarning time.Duration // tell the sender once when still undelivered after this long
	RetryMin     time.Duration // first retry after this, doubling each time...
	RetryMax     time.Duration // ...up to this
}

// queue schedules delivery of spooled messages: workers with bounded
// concurrency, retries with growing backoff, delay notices, bounces, and every
// outcome into the archive.
type queue struct {
	opts     QueueOptions
	spool    *spool
	dlv      deliverer
	archive  Recorder
	account  func(username string) *Account
	hostname string
	log      *slog.Logger
	redact   func(string) string
	now      func() time.Time
	metrics  *Metrics
	// consent is asked before a copy goes out in clear on its clients'
	// consent; nil: consent is checked only at RCPT.
	consent ConsentCheck

	mu      sync.Mutex
	entries map[string]*entry
	h       entryHeap
	wake    chan struct{}
	// free holds a token per idle worker. The scheduler takes an entry off
	// the schedule only with a token in hand, so an entry in flight is one
	// a worker is on: never one held while every worker is busy, which a
	// drop or retry would have to wait for.
	free chan struct{}
	work chan *entry
	// recording bounds the attempts whose outcomes are being written to the
	// archive after their worker moved on (see attempt).
	recording chan struct{}

	schedCtx    context.Context // stops the scheduler
	stopSched   context.CancelFunc
	deliverCtx  context.Context // aborts deliveries in flight
	stopDeliver context.CancelFunc
	wg          sync.WaitGroup
}

func newQueue(q *queue) *queue {
	q.entries = map[string]*entry{}
	q.wake = make(chan struct{}, 1)
	q.free = make(chan struct{}, max(q.opts.Workers, 1))
	q.work = make(chan *entry, max(q.opts.Workers, 1))
	q.recording = make(chan struct{}, 4*max(q.opts.Workers, 1))
	q.schedCtx, q.stopSched = context.WithCancel(context.Background())
	q.deliverCtx, q.stopDeliver = context.WithCancel(context.Background())
	return q
}

// start loads what is queued on disk and starts the scheduler and workers.
func (q *queue) start() error {
	entries, torn, errs := q.spool.loadQueue()
	for _, err := range errs {
		q.log.Error("unreadable queue entry left in place", "err", err)
	}
	entries, unrecorded, err := q.settleAwaiting(entries)
	if err != nil {
		return err
	}
	torn = append(torn, unrecorded...)
	if len(torn) > 0 {
		q.log.Warn("removed messages a crash cut off before they were acknowledged", "count", len(torn))
	}
	// Such a message may already be in the archive; say there that it never
	// went out and its sender was never told 250 (their client sends it again).
	for _, id := range torn {
		if q.archive == nil {
			break
		}
		ev := archive.Event{MessageID: id, Time: q.now(), Kind: archive.Aborted, Reply: "cut off by a crash before it was acknowledged; never sent"}
		if err := q.archive.RecordEvent(context.Background(), ev); err != nil {
			q.log.Error("cannot archive an aborted message", "id", id, "err", err)
		}
	}
	q.mu.Lock()
	for _, e := range entries {
		q.entries[e.meta.ID] = e
		heap.Push(&q.h, e)
	}
	q.mu.Unlock()
	if len(entries) > 0 {
		q.log.Info("queue resumed", "messages", len(entries))
	}
	q.wg.Add(1)
	go q.schedule()
	for i := 0; i < q.opts.Workers; i++ {
		q.free <- struct{}{}
		q.wg.Add(1)
		go q.worker()
	}
	return nil
}

// settleAwaiting decides about the messages a crash caught while their
// archive record was being written (see spool.go): only those whose record
// is in the archive can have been answered 250, and only they are
// delivered. The others are removed, as are files cut off before their
// trailer, and their ids returned.
func (q *queue) settleAwaiting(entries []*entry) ([]*entry, []string, error) {
	var ids []string
	for _, e := range entries {
		if e.awaitingArchive {
			ids = append(ids, e.meta.ID)
		}
	}
	if len(ids) == 0 {
		return entries, nil, nil
	}
	var recorded map[string]bool
	if q.archive != nil {
		var err error
		if recorded, err = q.archive.MessagesRecorded(context.Background(), ids); err != nil {
			// Delivering a message whose record may be missing, or dropping
			// one that was acknowledged: neither, until the archive reads.
			return nil, nil, fmt.Errorf("cannot tell whether %d messages a crash caught are in the archive: %w", len(ids), err)
		}
	} else {
		q.log.Warn("messages a crash caught while archiving, and no archive now to ask: they are delivered", "count", len(ids))
	}
	kept := entries[:0]
	var gone []string
	for _, e := range entries {
		if e.awaitingArchive && q.archive != nil && !recorded[e.meta.ID] {
			gone = append(gone, e.meta.ID)
			if err := e.remove(); err != nil {
				return nil, nil, err
			}
			continue
		}
		if e.awaitingArchive {
			if err := e.archived(); err != nil {
				q.log.Warn("cannot mark a spooled message as archived; the archive is asked again at the next start", "id", e.meta.ID, "err", err)
			}
		}
		kept = append(kept, e)
	}
	return kept, gone, nil
}

// stop lets deliveries in flight finish for up to grace, then aborts them.
// Nothing is lost either way: what was not confirmed stays queued.
func (q *queue) stop(grace time.Duration) {
	q.stopSched()
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		q.stopDeliver()
		<-done
	}
	q.stopDeliver()
	q.dlv.close()
}

func (q *queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// add hands a newly accepted (already durable) message to the scheduler.
func (q *queue) add(e *entry) {
	q.mu.Lock()
	q.entries[e.meta.ID] = e
	heap.Push(&q.h, e)
	q.mu.Unlock()
	q.poke()
}

func (q *queue) schedule() {
	defer q.wg.Done()
	defer close(q.work)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-q.free:
		case <-q.schedCtx.Done():
			return
		}
		due := q.nextDue(timer)
		if due == nil {
			return
		}
		q.work <- due // never blocks: one token, one place in the buffer
	}
}

// nextDue waits for the first entry that is due, takes it off the
// schedule and marks it in flight; nil when the scheduler stops.
func (q *queue) nextDue(timer *time.Timer) *entry {
	for {
		now := q.now()
		wait := time.Hour
		q.mu.Lock()
		if len(q.h) > 0 {
			next := q.h[0].state.NextAttempt
			if !next.After(now) {
				due := heap.Pop(&q.h).(*entry)
				due.shown = describeEntry(due)
				due.inFlight = true
				q.mu.Unlock()
				return due
			}
			wait = next.Sub(now)
		}
		q.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-q.wake:
		case <-q.schedCtx.Done():
			return nil
		}
	}
}

func (q *queue) worker() {
	defer q.wg.Done()
	for e := range q.work {
		q.attempt(e)
		q.free <- struct{}{}
	}
}

// isDropped says whether an admin dropped e; asked before every copy is
// handed to the provider.
func (q *queue) isDropped(e *entry) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return e.dropped
}

// backoff is the wait before retry n (n >= 1): RetryMin doubling up to
// RetryMax, with a tenth of jitter so a provider outage does not end in a
// thundering herd.
func (q *queue) backoff(n int) time.Duration {
	d := q.opts.RetryMin
	for i := 1; i < n && d < q.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, q.opts.RetryMax)
	j := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	return d + j
}

func (q *queue) attempt(e *entry) {
	log := q.log.With("id", e.meta.ID)
	acct := q.account(e.meta.Account)
	var events []archive.Event
	dropped := false
	for _, c := range e.meta.Copies {
		// A drop stops the attempt before the next copy: what was not
		// handed to the provider yet never is.
		if dropped = q.isDropped(e); dropped {
			break
		}
		var rcpts []string
		for _, r := range e.pending() {
			if r.Copy == c.Name {
				rcpts = append(rcpts, r.Recipient)
			}
		}
		if len(rcpts) == 0 {
			continue
		}
		name := c.Name
		j := &job{id: e.meta.ID, account: acct, from: e.meta.Sender, recipients: rcpts,
			open: func() (io.ReadCloser, error) { return e.open(name) }}
		if acct == nil && !e.meta.Notice {
			// The account was removed from the config: nobody can log in to
			// the provider for it. Keep trying until an admin decides.
			for _, o := range allOutcomes(j, fmt.Errorf("account %q is no longer configured", e.meta.Account), false) {
				e.state.LastError = o.reply
			}
			continue
		}
		if c.Protection == record.Consented && q.consent != nil {
			if j.recipients = q.checkConsent(e, name, rcpts, log); len(j.recipients) == 0 {
				continue
			}
		}
		outs := q.dlv.deliver(q.deliverCtx, j)
		now := q.now()
		for _, o := range outs {
			switch {
			case o.err == nil:
				q.metrics.delivered.Inc()
				q.metrics.upstreamReached(now)
				e.setStatus(o.recipient, rcptDelivered, o.reply, now)
				events = appendEvent(events, e.meta.ID, archive.Delivered, o.recipient, o.reply, now)
				log.Info("delivered", "rcpt", q.redact(o.recipient), "copy", name, "reply", addr.RedactText(o.reply, q.redact))
			case o.permanent:
				q.metrics.upstreamReached(now)
				e.setStatus(o.recipient, rcptFailed, o.reply, now)
				log.Warn("delivery failed for good", "rcpt", q.redact(o.recipient), "copy", name, "reply", addr.RedactText(o.reply, q.redact))
			default:
				q.metrics.deferred.Inc()
				e.state.LastError = o.reply
				e.setReply(o.recipient, o.reply)
				log.Info("delivery deferred", "rcpt", q.redact(o.recipient), "copy", name, "reply", addr.RedactText(o.reply, q.redact))
			}
		}
	}

	if !dropped {
		dropped = q.isDropped(e)
	}
	if !dropped {
		events = q.afterAttempt(e, events, log)
	}
	e.state.Unrecorded = append(e.state.Unrecorded, events...)
	// The worker is free once the provider has answered: the outcome goes
	// into the archive, and the entry leaves the spool only after that, on
	// its own goroutine. Waiting here put every worker behind the archive's
	// fsync of whatever large record was being written, which held up
	// deliveries more than sending them did. The entry stays in flight
	// (not scheduled again) until finish.
	q.recording <- struct{}{}
	q.wg.Add(1) // the worker's own count keeps the group above zero
	go func() {
		defer q.wg.Done()
		defer func() { <-q.recording }()
		q.record(e, log)
		q.finish(e, log)
	}()
}

// checkConsent asks, right before a copy goes out in clear on its clients'
// consent, whose consent still stands: a message may wait days in the
// queue after its RCPT decision. Those whose consent was withdrawn fail
// (their sender gets the usual notice); if it cannot be told, the copy
// waits for the next attempt. It returns the recipients to send to.
func (q *queue) checkConsent(e *entry, copyName string, rcpts []string, log *slog.Logger) []string {
	ctx, cancel := context.WithTimeout(q.deliverCtx, consentCheckTimeout)
	withdrawn, err := q.consent(ctx, rcpts, q.now())
	cancel()
	now := q.now()
	if err != nil {
		reply := "not sent yet: the consent registry could not be read to confirm consent to unencrypted email; will try again"
		e.state.LastError = reply
		for _, r := range rcpts {
			q.metrics.deferred.Inc()
			e.setReply(r, reply)
		}
		log.Warn("cannot check consent before sending in clear; the copy waits for the next attempt", "copy", copyName, "err", err)
		return nil
	}
	var send []string
	for _, r := range rcpts {
		why, ok := withdrawn[r]
		if !ok {
			send = append(send, r)
			continue
		}
		e.setStatus(r, rcptFailed, consentWithdrawnReply(why), now)
		log.Warn("not sent: consent to unencrypted email was withdrawn after the message was accepted", "rcpt", q.redact(r), "copy", copyName)
	}
	return send
}

// consentCheckTimeout bounds one ConsentCheck.
const consentCheckTimeout = 30 * time.Second

// consentWithdrawnPrefix starts the reply of a recipient whose consent was
// withdrawn while the message waited (statusOf gives it 5.7.1).
const consentWithdrawnPrefix = "not sent: consent to unencrypted email was withdrawn after the message was accepted"

func consentWithdrawnReply(why string) string {
	if why = textutil.OneLine(why); why != "" {
		why = " (" + why + ")"
	}
	return consentWithdrawnPrefix + why + "; send it again to have it encrypted, or ask the client to consent"
}

// afterAttempt decides after an attempt: the next retry and the delay notice,
// or giving up; and the failure notice once every recipient has an outcome.
// It returns events with the attempt's further outcomes.
func (q *queue) afterAttempt(e *entry, events []archive.Event, log *slog.Logger) []archive.Event {
	now := q.now()
	e.state.Attempts++
	age := now.Sub(e.meta.Received)
	if pend := e.pending(); len(pend) > 0 {
		if age >= q.opts.Lifetime {
			for _, r := range pend {
				reply := fmt.Sprintf("gave up after %s in the queue; last reply: %s", roundDuration(age), orNone(r.Reply))
				e.setStatus(r.Recipient, rcptFailed, reply, now)
			}
		} else {
			e.state.NextAttempt = now.Add(q.backoff(e.state.Attempts))
			for _, r := range pend {
				events = appendEvent(events, e.meta.ID, archive.Deferred, r.Recipient, orNone(r.Reply), now)
			}
			if !e.meta.Notice && !e.state.DelayNotified && age >= q.opts.DelayWarning {
				if err := q.enqueueNotice(e, noticeDelayed, pend, now); err != nil {
					log.Error("cannot queue the delay notice; will try again", "err", err)
				} else {
					e.state.DelayNotified = true
					for _, r := range pend {
						events = appendEvent(events, e.meta.ID, archive.Delayed, r.Recipient, "delay notice sent to the sender", now)
					}
				}
			}
		}
	}
	if len(e.pending()) == 0 && !e.state.Bounced {
		var failed []rcptState
		for _, r := range e.state.Recipients {
			if r.Status == rcptFailed {
				failed = append(failed, r)
			}
		}
		if len(failed) > 0 {
			bounced := true
			if e.meta.Notice {
				log.Error("a delivery status notification could not be delivered; dropped", "reply", addr.RedactText(failed[0].Reply, q.redact))
			} else if err := q.enqueueNotice(e, noticeFailed, failed, now); err != nil {
				// Keep the entry: without the notification the sender would
				// never learn the message did not arrive.
				log.Error("cannot queue the failure notice; will try again", "err", err)
				bounced = false
				e.state.NextAttempt = now.Add(q.opts.RetryMin)
			}
			if bounced {
				e.state.Bounced = true
				for _, r := range failed {
					q.metrics.bounced.Inc()
					events = appendEvent(events, e.meta.ID, archive.Bounced, r.Recipient, r.Reply, now)
				}
			}
		}
	}
	return events
}

// record copies outcomes into the archive. What cannot be written now stays
// in the entry's state and is tried again at its next turn.
func (q *queue) record(e *entry, log *slog.Logger) error {
	if q.archive == nil {
		e.state.Unrecorded = nil
		return nil
	}
	for len(e.state.Unrecorded) > 0 {
		if err := q.archive.RecordEvent(q.deliverCtx, e.state.Unrecorded[0]); err != nil {
			log.Error("cannot archive a delivery outcome; will try again", "err", err)
			return err
		}
		e.state.Unrecorded = e.state.Unrecorded[1:]
	}
	e.state.Unrecorded = nil
	return nil
}

// finish ends an entry's turn: a message whose every recipient has an
// outcome that is in the archive is removed, a dropped one is settled, and
// anything else goes back into the schedule with its state saved. A drop
// or retry that arrives meanwhile is seen under the lock that puts the
// entry back, so neither is lost.
func (q *queue) finish(e *entry, log *slog.Logger) {
	if q.isDropped(e) {
		q.settleDrop(e, log)
		return
	}
	if len(e.pending()) == 0 && (e.state.Bounced || !hasFailed(e)) && len(e.state.Unrecorded) == 0 {
		if err := q.remove(e); err != nil {
			log.Error("cannot remove a finished message from the spool", "err", err)
		}
		// A drop that came too late to stop anything.
		q.endDropWait(e, errDropTooLate)
		return
	}
	if len(e.pending()) == 0 && !e.state.NextAttempt.After(q.now()) {
		e.state.NextAttempt = q.now().Add(q.opts.RetryMin)
	}
	if err := e.saveState(); err != nil {
		log.Error("cannot save delivery state; recipients may get a duplicate after a restart", "err", err)
	}
	q.mu.Lock()
	if e.dropped {
		q.mu.Unlock()
		q.settleDrop(e, log)
		return
	}
	if e.retryNow {
		e.retryNow = false
		e.state.NextAttempt = q.now()
	}
	e.inFlight = false
	heap.Push(&q.h, e)
	q.mu.Unlock()
	q.poke()
}

// settleDrop ends the turn of a dropped entry (in flight, so its state is
// the caller's): its outcomes not yet in the archive, then the drop naming
// the recipients who never got the message, are written to the archive,
// and only then is it removed. If the archive cannot take them the entry
// stays, never to be sent again, and they are tried again at its next turn
// (after a restart too: state.Dropped). The error says what went wrong.
func (q *queue) settleDrop(e *entry, log *slog.Logger) error {
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

// markDropped notes the drop in the entry's state, and the event naming the
// recipients who never got the message among the outcomes to archive
// before it may leave the spool. Once.
func (e *entry) markDropped(now time.Time) {
	if e.state.Dropped {
		return
	}
	e.state.Dropped = true
	if not := notDelivered(e); len(not) > 0 {
		e.state.Unrecorded = append(e.state.Unrecorded, archive.Event{MessageID: e.meta.ID, Time: now,
			Kind: archive.Dropped, Recipients: not, Reply: "removed from the queue by an admin"})
	}
}

// notDelivered lists the recipients a drop keeps the message from: those
// still pending, and those who failed if their sender was not told yet.
func notDelivered(e *entry) []string {
	var out []string
	for _, r := range e.state.Recipients {
		if r.Status == rcptPending || (r.Status == rcptFailed && !e.state.Bounced) {
			out = append(out, r.Recipient)
		}
	}
	return out
}

func hasFailed(e *entry) bool {
	for _, r := range e.state.Recipients {
		if r.Status == rcptFailed {
			return true
		}
	}
	return false
}

// remove takes an entry in flight out of the spool and the queue. If its
// file stays, its state is saved: a restart then neither sends it again
// nor forgets a drop.
func (q *queue) remove(e *entry) error {
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
func (q *queue) endDropWait(e *entry, err error) {
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

func appendEvent(evs []archive.Event, id string, kind archive.EventKind, rcpt, reply string, now time.Time) []archive.Event {
	// One event per outcome, grouped when the provider said the same thing
	// about several recipients of one copy.
	for i := range evs {
		if evs[i].Kind == kind && evs[i].Reply == reply {
			evs[i].Recipients = append(evs[i].Recipients, rcpt)
			return evs
		}
	}
	return append(evs, archive.Event{MessageID: id, Time: now, Kind: kind, Recipients: []string{rcpt}, Reply: reply})
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func roundDuration(d time.Duration) time.Duration {
	if d > time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}

// QueuedMessage is one line of `sealpost queue list`.
type QueuedMessage struct {
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
}

func describeEntry(e *entry) QueuedMessage {
	return QueuedMessage{ID: e.meta.ID, Account: e.meta.Account, Received: e.meta.Received, Size: e.size(),
		Attempts: e.state.Attempts, NextAttempt: e.state.NextAttempt, Pending: len(e.pending()),
		LastError: e.state.LastError, Notice: e.meta.Notice, Dropped: e.dropped}
}

func (q *queue) list() []QueuedMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]QueuedMessage, 0, len(q.entries))
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

// ErrNoSuchMessage is returned for a queue id (or prefix) that matches nothing.
var ErrNoSuchMessage = errors.New("no such message in the queue")

func (q *queue) find(prefix string) (*entry, error) {
	var found *entry
	for id, e := range q.entries {
		if len(id) >= len(prefix) && id[:len(prefix)] == prefix {
			if found != nil {
				return nil, fmt.Errorf("%q matches several messages; give more of the id", prefix)
			}
			found = e
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s: %w", prefix, ErrNoSuchMessage)
	}
	return found, nil
}

// retry makes a message due now.
func (q *queue) retry(prefix string) (string, error) {
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

// drop removes a message from the queue for good: nothing of it is handed
// to the provider after drop returns, and the archive gets the outcomes
// it lacked, then the drop, before the message leaves the spool. An error
// with the id means the message was dropped (it is never sent) but that
// was not recorded or not removed yet.
func (q *queue) drop(prefix string) (string, error) {
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

func (q *queue) stats() (n int, oldest time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range q.entries {
		if oldest.IsZero() || e.meta.Received.Before(oldest) {
			oldest = e.meta.Received
		}
	}
	return len(q.entries), oldest
}

// entryHeap orders entries by their next attempt.
type entryHeap []*entry

func (h entryHeap) Len() int { return len(h) }
func (h entryHeap) Less(i, j int) bool {
	return h[i].state.NextAttempt.Before(h[j].state.NextAttempt)
}
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}

// newEntry builds the queue entry of an accepted message.
func newEntry(s *spool, id, account, sender string, received time.Time, copies []rules.Copy, notice bool) *entry {
	e := &entry{s: s, index: -1, meta: entryMeta{ID: id, Account: account, Sender: sender, Received: received, Copies: copies, Notice: notice}}
	e.state = initialState(e.meta)
	return e
}

// initialState is a message's delivery state before its first attempt; it
// is not written to disk until something has happened.
func initialState(m entryMeta) entryState {
	var st entryState
	for _, c := range m.Copies {
		for _, r := range c.Recipients {
			st.Recipients = append(st.Recipients, rcptState{Recipient: r, Copy: c.Name, Status: rcptPending})
		}
	}
	st.NextAttempt = m.Received
	return st
}
