package queue

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/relay/provider"
)

// Options are the delivery schedule's settings.
type Options struct {
	Workers      int
	Lifetime     time.Duration // bounce what is still undelivered after this long
	DelayWarning time.Duration // tell the sender once when still undelivered after this long
	RetryMin     time.Duration // first retry after this, doubling each time...
	RetryMax     time.Duration // ...up to this
}

// Archive is where the queue records every delivery outcome (implemented
// by archive.Archive). Each method returns only once what it was given is
// durable.
type Archive interface {
	RecordEvent(ctx context.Context, e archive.Event) error
	// MessagesRecorded says which of ids have a message record: asked
	// after a crash about spooled messages whose record was being written.
	MessagesRecorded(ctx context.Context, ids []string) (map[string]bool, error)
}

// ConsentCheck is asked right before a copy that goes out unencrypted on
// the strength of its clients' consent (record.Consented) is handed to the
// provider: a message can wait in the queue for days after its recipients
// were decided at RCPT, and a client may withdraw consent meanwhile (or it
// may expire).
//
// recipients are the copy's envelope recipients as accepted. Such a copy
// may also carry colleagues and, for mail the client encrypted itself,
// key holders; the check answers for each recipient. withdrawn maps every
// recipient who may no longer get it in clear to a short phrase for the
// sender's failure notice and the record, such as "revoked on
// 2026-03-02"; those are not sent to, and fail for good. Recipients not
// in it are sent to. An error means it could not be told: the copy waits
// for the next attempt. It must not put addresses into the error.
type ConsentCheck func(ctx context.Context, recipients []string, now time.Time) (withdrawn map[string]string, err error)

// SealedCheck is asked right before a sealed copy (record.Sealed) is handed
// to the provider: it opens only with the passphrase it was sealed with
// (the passphrase-set event eventID, rules.Copy.SealedWith), and the client
// may have had it replaced or removed while the message waited. withdrawn
// is "" when the copy may go, else a short phrase for the sender's failure
// notice and the record ("passphrase removed on 2026-12-02"): the copy is
// not sent and fails for good. An error means it could not be told: the
// copy waits for the next attempt. It must not put addresses into the error.
type SealedCheck func(ctx context.Context, recipient string, eventID int64, now time.Time) (withdrawn string, err error)

// ReportInbox puts a delivery report straight into the sending account's
// own mailbox at the provider: appended to its INBOX, flagged, and never
// twice with the same messageID. handled is false for an account whose
// mailbox sealpost does not read ([account.imap]); its reports are sent as
// the account instead. report is the whole message.
type ReportInbox func(ctx context.Context, account, messageID string, report []byte) (handled bool, err error)

// Config is what a Queue needs.
type Config struct {
	Dir       string // the spool's folder
	Options   Options
	Deliverer provider.Deliverer
	// Archive records the outcomes; nil records nothing.
	Archive Archive
	// Login is an account's login to the provider; nil for an account no
	// longer configured (its messages wait until an admin decides).
	Login func(account string) *provider.Login
	// Consent is asked before a copy goes out in clear on its clients'
	// consent; nil: consent is checked only at RCPT.
	Consent ConsentCheck
	// Sealed is asked before a sealed copy goes out; nil: the passphrase
	// is checked only when the copy is made.
	Sealed   SealedCheck
	Hostname string // in delivery status notifications
	Log      *slog.Logger
	// Redact turns an address into a keyed hash for logs.
	Redact  func(string) string
	Now     func() time.Time
	Metrics *Metrics
}

// Queue schedules the delivery of spooled messages: workers with bounded
// concurrency, retries with growing backoff, delay notices, bounces, and
// every outcome into the archive. It holds the spool's lock from Open to
// Stop.
type Queue struct {
	opts     Options
	spool    *spool
	dlv      provider.Deliverer
	archive  Archive
	login    func(account string) *provider.Login
	hostname string
	log      *slog.Logger
	redact   func(string) string
	now      func() time.Time
	metrics  *Metrics
	consent  ConsentCheck
	sealed   SealedCheck
	reports  atomic.Pointer[ReportInbox]

	mu      sync.Mutex
	entries map[string]*entry
	h       entryHeap
	// releaseSlots counts the entries held until each opening (unix
	// seconds), for their spread (hold.go).
	releaseSlots map[int64]int
	wake         chan struct{}
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

// SetReportInbox gives the queue the accounts' mailboxes for delivery
// reports (the mailbox readers start after the queue, and change on reload).
func (q *Queue) SetReportInbox(f ReportInbox) { q.reports.Store(&f) }

// Open takes the spool's lock (one serve per data dir); Start begins
// delivery.
func Open(cfg Config) (*Queue, error) {
	sp, err := openSpool(cfg.Dir)
	if err != nil {
		return nil, err
	}
	workers := max(cfg.Options.Workers, 1)
	q := &Queue{opts: cfg.Options, spool: sp, dlv: cfg.Deliverer, archive: cfg.Archive, login: cfg.Login,
		hostname: cfg.Hostname, log: cfg.Log, redact: cfg.Redact, now: cfg.Now, metrics: cfg.Metrics, consent: cfg.Consent, sealed: cfg.Sealed,
		entries: map[string]*entry{}, wake: make(chan struct{}, 1),
		free: make(chan struct{}, workers), work: make(chan *entry, workers), recording: make(chan struct{}, 4*workers)}
	q.schedCtx, q.stopSched = context.WithCancel(context.Background())
	q.deliverCtx, q.stopDeliver = context.WithCancel(context.Background())
	cfg.Metrics.registerQueue(q)
	return q, nil
}

// NewIncoming starts the spool file of message id, received at received.
func (q *Queue) NewIncoming(id string, received time.Time) (*Incoming, error) {
	return q.spool.newIncoming(id, received)
}

// Enqueue hands a committed message to the schedule: its archive record is
// durable too (see Incoming.Commit).
func (q *Queue) Enqueue(in *Incoming) {
	in.confirm()
	q.add(in.entry)
}

// Start loads what is queued on disk and starts the scheduler and workers.
func (q *Queue) Start() error {
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
		q.placeHeld(e)
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
func (q *Queue) settleAwaiting(entries []*entry) ([]*entry, []string, error) {
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

// Stop lets deliveries in flight finish for up to grace, then aborts them,
// and releases the spool. Nothing is lost either way: what was not
// confirmed stays queued.
func (q *Queue) Stop(grace time.Duration) {
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
	q.dlv.Close()
	q.spool.close()
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// add hands a newly accepted (already durable) message to the scheduler.
func (q *Queue) add(e *entry) {
	q.mu.Lock()
	q.entries[e.meta.ID] = e
	q.placeHeld(e)
	heap.Push(&q.h, e)
	q.mu.Unlock()
	q.poke()
}

func (q *Queue) schedule() {
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
func (q *Queue) nextDue(timer *time.Timer) *entry {
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
			// A wall clock set forward must not keep a held message
			// waiting for the old interval.
			wait = min(next.Sub(now), clockRecheck)
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

func (q *Queue) worker() {
	defer q.wg.Done()
	for e := range q.work {
		q.attempt(e)
		q.free <- struct{}{}
	}
}

// isDropped says whether an admin dropped e; asked before every copy is
// handed to the provider.
func (q *Queue) isDropped(e *entry) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return e.dropped
}

// backoff is the wait before retry n (n >= 1): RetryMin doubling up to
// RetryMax, with a tenth of jitter so a provider outage does not end in a
// thundering herd.
func (q *Queue) backoff(n int) time.Duration {
	d := q.opts.RetryMin
	for i := 1; i < n && d < q.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, q.opts.RetryMax)
	j := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	return d + j
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
