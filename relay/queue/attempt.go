package queue

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/provider"
	"github.com/sealpost/sealpost/rules"
)

// attempt is one turn of an entry in flight: every copy with recipients
// still pending goes to the provider, then the next retry, notices and
// outcomes are settled (afterAttempt, record, finish).
func (q *Queue) attempt(e *entry) {
	log := q.log.With("id", e.meta.ID)
	login := q.login(e.meta.Account)
	var events []archive.Event
	dropped := false
	// A turn with every pending copy held only records the hold.
	tried := len(e.pendingReady(q.now())) > 0
	for _, c := range e.meta.Copies {
		// A drop stops the attempt before the next copy: what was not
		// handed to the provider yet never is.
		if dropped = q.isDropped(e); dropped {
			break
		}
		events = q.deliverCopy(e, c, login, events, log)
	}

	if !dropped {
		dropped = q.isDropped(e)
	}
	if !dropped {
		events = q.afterAttempt(e, events, tried, log)
	}
	e.state.Unrecorded = append(e.state.Unrecorded, events...)
	// The worker is free once the provider has answered: the outcome goes
	// into the archive, and the entry leaves the spool only after that, on
	// its own goroutine. Waiting here would put every worker behind the
	// archive's fsync of whatever large record is being written, which
	// holds up deliveries more than sending them does. The entry stays in
	// flight (not scheduled again) until finish.
	q.recording <- struct{}{}
	q.wg.Add(1) // the worker's own count keeps the group above zero
	go func() {
		defer q.wg.Done()
		defer func() { <-q.recording }()
		q.record(e, log)
		q.finish(e, log)
	}()
}

// deliverCopy hands copy c to the provider for its recipients still
// pending, notes each one's outcome in e, and returns events with the
// outcomes to archive.
func (q *Queue) deliverCopy(e *entry, c rules.Copy, login *provider.Login, events []archive.Event, log *slog.Logger) []archive.Event {
	if e.heldAt(c, q.now()) {
		return events
	}
	var rcpts []string
	for _, r := range e.pending() {
		if r.Copy == c.Name && slices.Contains(c.Recipients, r.Recipient) {
			rcpts = append(rcpts, r.Recipient)
		}
	}
	if len(rcpts) == 0 {
		return events
	}
	events = e.released(c, rcpts, q.now(), events)
	if e.meta.Notice && e.meta.ReportID != "" && q.putReport(e, c, rcpts, log) {
		now := q.now()
		for _, r := range rcpts {
			events = appendEvent(events, e.meta.ID, archive.Delivered, r, reportPut, now)
		}
		return events
	}
	if login == nil && !e.meta.Notice {
		// The account was removed from the config: nobody can log in to
		// the provider for it. Keep trying until an admin decides.
		e.state.LastError = textutil.OneLine(fmt.Sprintf("account %q is no longer configured", e.meta.Account))
		return events
	}
	if (c.Protection == record.Consented || c.Protection == record.Professional) && q.consent != nil {
		if rcpts = q.checkConsent(e, c.Name, rcpts, log); len(rcpts) == 0 {
			return events
		}
	}
	if c.Protection == record.Sealed && q.sealed != nil {
		if rcpts = q.checkSealed(e, c, rcpts, log); len(rcpts) == 0 {
			return events
		}
	}
	name := c.Name
	j := &provider.Job{ID: e.meta.ID, Login: login, From: e.meta.Sender, Recipients: rcpts,
		Open: func() (io.ReadCloser, error) { return e.open(name) }}
	outs := q.dlv.Deliver(q.deliverCtx, j)
	now := q.now()
	for _, o := range outs {
		switch {
		case o.Err == nil:
			q.metrics.delivered.Inc()
			q.metrics.UpstreamReached(now)
			e.setStatus(o.Recipient, rcptDelivered, o.Reply, now)
			events = appendEvent(events, e.meta.ID, archive.Delivered, o.Recipient, o.Reply, now)
			log.Info("delivered", "rcpt", q.redact(o.Recipient), "copy", name, "reply", addr.RedactText(o.Reply, q.redact))
		case o.Permanent:
			q.metrics.UpstreamReached(now)
			e.setStatus(o.Recipient, rcptFailed, o.Reply, now)
			log.Warn("delivery failed for good", "rcpt", q.redact(o.Recipient), "copy", name, "reply", addr.RedactText(o.Reply, q.redact))
		default:
			q.metrics.deferred.Inc()
			e.state.LastError = o.Reply
			e.setReply(o.Recipient, o.Reply)
			log.Info("delivery deferred", "rcpt", q.redact(o.Recipient), "copy", name, "reply", addr.RedactText(o.Reply, q.redact))
		}
	}
	return events
}

// reportPut is the outcome of a report put into the account's INBOX.
const reportPut = "put into the account's INBOX (IMAP APPEND), flagged"

// reportTimeout bounds putting one report into a mailbox.
const reportTimeout = 2 * time.Minute

// putReport puts a delivery report into the account's INBOX where
// sealpost reads that mailbox, and says whether it did. When it did not
// (no mailbox read, or the APPEND failed), the report goes out by SMTP as
// the account: the therapist must learn of it either way.
func (q *Queue) putReport(e *entry, c rules.Copy, rcpts []string, log *slog.Logger) bool {
	put := q.reports.Load()
	if put == nil || *put == nil {
		return false
	}
	body, err := readCopy(e, c.Name)
	if err != nil {
		log.Warn("cannot read the delivery report; sending it as the account", "err", err)
		return false
	}
	ctx, cancel := context.WithTimeout(q.deliverCtx, reportTimeout)
	handled, err := (*put)(ctx, e.meta.Account, e.meta.ReportID, body)
	cancel()
	if !handled {
		return false
	}
	if err != nil {
		log.Warn("cannot put the delivery report into the account's INBOX; sending it as the account instead", "err", err)
		return false
	}
	now := q.now()
	for _, r := range rcpts {
		q.metrics.delivered.Inc()
		e.setStatus(r, rcptDelivered, reportPut, now)
	}
	log.Info("delivery report put into the account's INBOX", "report", e.meta.ReportID)
	return true
}

func readCopy(e *entry, name string) ([]byte, error) {
	r, err := e.open(name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// checkConsent asks, right before a copy goes out in clear on its clients'
// consent, whose consent still stands: a message may wait days in the
// queue after its RCPT decision. Those whose consent was withdrawn fail
// (their sender gets the usual notice); if it cannot be told, the copy
// waits for the next attempt. It returns the recipients to send to.
func (q *Queue) checkConsent(e *entry, copyName string, rcpts []string, log *slog.Logger) []string {
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

// checkSealed asks, right before a sealed copy goes out, whether its
// recipient still has the passphrase it was sealed with: one replaced or
// removed while the message waited fails, as a withdrawn consent does; if
// it cannot be told, the copy waits for the next attempt. It returns the
// recipients to send to.
func (q *Queue) checkSealed(e *entry, c rules.Copy, rcpts []string, log *slog.Logger) []string {
	var send []string
	for _, r := range rcpts {
		ctx, cancel := context.WithTimeout(q.deliverCtx, consentCheckTimeout)
		why, err := q.sealed(ctx, r, c.SealedWith, q.now())
		cancel()
		now := q.now()
		switch {
		case err != nil:
			reply := "not sent yet: the consent registry could not be read to confirm the client's passphrase for the sealed PDF; will try again"
			e.state.LastError = reply
			q.metrics.deferred.Inc()
			e.setReply(r, reply)
			log.Warn("cannot check the passphrase before sending a sealed copy; it waits for the next attempt", "copy", c.Name, "err", err)
		case why != "":
			e.setStatus(r, rcptFailed, passphraseChangedReply(why), now)
			log.Warn("not sent: the passphrase the copy was sealed with was replaced or removed after the message was accepted", "rcpt", q.redact(r), "copy", c.Name)
		default:
			send = append(send, r)
		}
	}
	return send
}

// passphraseChangedPrefix starts the reply of a sealed recipient whose
// passphrase changed while the message waited (statusOf gives it 5.7.1).
const passphraseChangedPrefix = "not sent: the client's passphrase for sealed PDFs changed after the message was accepted"

func passphraseChangedReply(why string) string {
	if why = textutil.OneLine(why); why != "" {
		why = " (" + why + ")"
	}
	return passphraseChangedPrefix + why + "; the copy sealed with the old passphrase was not sent; send the message again to have it sealed with the current one"
}

// afterAttempt decides after an attempt: the next retry and the delay notice,
// or giving up; and the failure notice once every recipient has an outcome.
// It returns events with the attempt's further outcomes.
func (q *Queue) afterAttempt(e *entry, events []archive.Event, tried bool, log *slog.Logger) []archive.Event {
	now := q.now()
	if tried {
		e.state.Attempts++
	}
	age := now.Sub(e.waitingSince(now))
	if pend := e.pendingReady(now); len(pend) > 0 {
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
	if rel, ok := e.nextRelease(now); ok && (len(e.pendingReady(now)) == 0 || rel.Before(e.state.NextAttempt)) {
		e.state.NextAttempt = rel
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
func (q *Queue) record(e *entry, log *slog.Logger) error {
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
func (q *Queue) finish(e *entry, log *slog.Logger) {
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
