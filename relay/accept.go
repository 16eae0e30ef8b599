package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/ids"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/queue"
	"github.com/sealpost/sealpost/relay/submission"
	"github.com/sealpost/sealpost/rules"
)

// Accept takes in the message a client is sending in DATA (for the
// submission room): see accept.
func (s *Server) Accept(ctx context.Context, log *slog.Logger, env submission.Envelope, msg io.Reader) (submission.Accepted, error) {
	return s.accept(ctx, log, env, msg, false)
}

// accept takes in one message, stage by stage. The sender is told 250
// only when it returns nil: the copies are in the spool and the message is
// in the archive, both fsynced, and it is queued. autoReplied marks a
// message sealpost wrote itself (Submit).
func (s *Server) accept(ctx context.Context, log *slog.Logger, env submission.Envelope, msg io.Reader, autoReplied bool) (submission.Accepted, error) {
	if !s.beginInflight() {
		return submission.Accepted{}, submission.ErrShuttingDown
	}
	id, held, err := s.acceptStages(ctx, log, env, msg, autoReplied)
	return submission.Accepted{ID: id, Held: held}, err
}

// acceptStages are accept's stages; held says until when copies to
// clients wait for the sender's office hours ("" when none do).
func (s *Server) acceptStages(ctx context.Context, log *slog.Logger, env submission.Envelope, msg io.Reader, autoReplied bool) (id, held string, err error) {
	defer s.inflight.Done()
	now := s.cfg.Now()
	id = ids.New(now)
	log = log.With("id", id)

	// 1. The message's file in the spool, where its copies go.
	in, err := s.queue.NewIncoming(id, now)
	if err != nil {
		return "", "", err
	}
	defer in.Abort() // unless it is queued
	// 2. Its header section, checked against the account and completed.
	m, err := submission.ReadMessage(msg, env.Account, s.cfg.Hostname, id, now, autoReplied)
	if err != nil {
		return "", "", err
	}
	defer m.Close()
	// 3. The rules make the plain copy and name every copy.
	sub := rules.Submission{ID: id, Account: env.Account.Username, Sender: env.From, Decisions: env.Recipients, Automatic: autoReplied}
	res, err := s.applyRules(ctx, log, now, sub, m, in)
	if err != nil {
		return "", "", err
	}
	// 4. The archive records the plain copy while the rules encrypt.
	rec := archive.Message{ID: id, Time: now, Direction: archive.Outbound, Account: sub.Account,
		Sender: env.From, Decisions: res.Decisions, Fired: res.Fired}
	for _, r := range env.Refused {
		rec.Refused = append(rec.Refused, archive.RefusedRecipient{Address: r.Address, Ref: r.Ref})
	}
	a, err := s.archiveWhileEncrypting(ctx, log, rec, in, res)
	if err != nil {
		return "", "", err
	}
	// 5. The spool file and the record, durable together.
	if err := s.makeDurable(ctx, log, a, in, queue.Envelope{Account: sub.Account, Sender: env.From, Copies: res.Copies}); err != nil {
		return "", "", err
	}
	// 6. Delivery.
	s.queue.Enqueue(in)
	log.Info("accepted", "recipients", len(env.Recipients), "copies", len(res.Copies), "held", res.Held != "")
	return id, res.Held, nil
}

// Decide decides about one recipient at RCPT (for the submission room).
func (s *Server) Decide(ctx context.Context, account, recipient string) (record.Decision, error) {
	return s.decide(ctx, s.log, account, recipient)
}

// decide asks the rules about one recipient of account's. The copies go
// to the address that was decided on, not to the text typed: the provider,
// the outbox's Delivered-To and the record see it. A refused recipient is
// recorded in the archive and returned as a *rules.Refusal with its
// reference.
func (s *Server) decide(ctx context.Context, log *slog.Logger, account, recipient string) (record.Decision, error) {
	d, err := s.cfg.Rules.Decide(ctx, account, recipient)
	if err != nil {
		return d, err
	}
	if d.Address == "" {
		d.Address = recipient
	}
	d.Recipient = d.Address
	if d.Protection == record.Refused {
		refusal := &rules.Refusal{Reason: d.Reason, Code: d.RefusalCode}
		s.recordRefusal(ctx, log, account, d.Address, refusal)
		return d, refusal
	}
	return d, nil
}

// recordRefusal gives a refusal its reference (unless it has one) and puts
// it into the record. The refusal stands either way; only its record may
// be missing, and the log line still carries the reference.
func (s *Server) recordRefusal(ctx context.Context, log *slog.Logger, account, recipient string, refusal *rules.Refusal) {
	if refusal.Ref == "" {
		refusal.Ref = record.NewRef()
	}
	if s.cfg.Archive == nil {
		return
	}
	r := archive.RefusalRecord{Time: s.cfg.Now(), Account: account, Recipient: recipient, Reason: refusal.Reason, Ref: refusal.Ref, Code: refusal.Code}
	if err := s.cfg.Archive.RecordRefusal(ctx, r); err != nil {
		log.Error("cannot archive a refusal", "ref", refusal.Ref, "err", err)
	}
}

// RecordRefusal records a refusal the submission room made itself (a
// message some of whose recipients were refused at RCPT), with the
// reference it has or a new one.
func (s *Server) RecordRefusal(ctx context.Context, log *slog.Logger, account string, refusal *rules.Refusal) {
	s.recordRefusal(ctx, log, account, "", refusal)
}

// SetPartialSends says whether a message goes to its accepted recipients
// when others were refused at RCPT ([policy] partial_sends = "allow").
func (s *Server) SetPartialSends(allow bool) { s.smtp.SetPartialSends(allow) }

// applyRules lets the rules read the message straight off the wire and
// write its copies into the spool file: the submitted message itself is
// never stored, only the copies made from it.
func (s *Server) applyRules(ctx context.Context, log *slog.Logger, now time.Time, sub rules.Submission, m *submission.Message, in *queue.Incoming) (*rules.Result, error) {
	res, err := s.cfg.Rules.Prepare(ctx, sub, m, in)
	if bad := m.InputError(); bad != nil {
		// Whatever the rules made of it, bad input is answered as such.
		return nil, bad
	}
	if err != nil {
		var refusal *rules.Refusal
		if errors.As(err, &refusal) {
			s.recordRefusal(ctx, log, sub.Account, "", refusal)
		}
		return nil, err
	}
	// The rules may stop reading early; the rest of DATA must still be clean.
	if err := m.ReadRest(); err != nil {
		return nil, err
	}
	if err := checkCopies(sub, res); err != nil {
		return nil, err
	}
	return res, nil
}

// checkCopies makes sure the rules put every accepted recipient in exactly
// one copy: a recipient in none would silently lose the message, in two would
// get it twice, perhaps once in clear.
func checkCopies(sub rules.Submission, res *rules.Result) error {
	seen := map[string]int{}
	for _, c := range res.Copies {
		for _, r := range c.Recipients {
			seen[r]++
		}
	}
	for _, d := range sub.Decisions {
		if seen[d.Recipient] != 1 {
			return fmt.Errorf("policy put a recipient in %d copies instead of one", seen[d.Recipient])
		}
		delete(seen, d.Recipient)
	}
	if len(seen) > 0 {
		return errors.New("policy added recipients that were not accepted")
	}
	if res.Plain == "" {
		return errors.New("policy named no plain copy for the archive")
	}
	return nil
}

// archiving is a message's archive record being written on a goroutine of
// its own while the encrypted and sealed copies are made: both read the
// plain copy, and for a large message each is an encryption of all of it
// that the client waits for, so they run on two cores.
type archiving struct {
	id       string
	result   chan error    // nil: there is no archive
	bodyRead chan struct{} // closed once the archive has read the plain copy
	done     bool
	err      error
}

// archiveWhileEncrypting makes the encrypted and sealed copies while the
// archive records the plain copy, and returns once the archive has read
// it. The record's decisions are those after EncryptCopies, which adds
// the sealed PDFs' hashes: the archive gets them at the plain copy's end
// (archive.DecisionsAtEnd). A message the rules refuse while sealing is
// not recorded as a message but as a refusal.
func (s *Server) archiveWhileEncrypting(ctx context.Context, log *slog.Logger, rec archive.Message, in *queue.Incoming, res *rules.Result) (*archiving, error) {
	a := &archiving{id: rec.ID}
	copiesMade := &copiesGate{done: make(chan struct{})}
	if s.cfg.Archive != nil {
		body, err := in.Open(res.Plain)
		if err != nil {
			return nil, err
		}
		a.result, a.bodyRead = make(chan error, 1), make(chan struct{})
		go func() {
			defer body.Close()
			a.result <- s.cfg.Archive.RecordMessage(ctx, rec, &endNotifier{r: body, end: a.bodyRead, gate: copiesMade})
		}()
	}
	encErr := s.cfg.Rules.EncryptCopies(ctx, in, res)
	var refusal *rules.Refusal
	if errors.As(encErr, &refusal) {
		copiesMade.open(nil, encErr)
	} else {
		copiesMade.open(res.Decisions, nil)
	}
	if a.result != nil {
		select {
		case <-a.bodyRead:
		case a.err = <-a.result:
			a.done = true
		}
	}
	if refusal != nil {
		a.wait() // the record was refused its end: nothing to abandon
		s.recordRefusal(ctx, log, rec.Account, "", refusal)
		return nil, encErr
	}
	if encErr != nil {
		s.abandon(ctx, log, a, "the encrypted copy could not be made; the sender was asked to retry")
		return nil, encErr
	}
	if a.err != nil {
		return nil, fmt.Errorf("archive: %w", a.err)
	}
	return a, nil
}

// pending says the record is being written, not known durable yet.
func (a *archiving) pending() bool { return a.result != nil && !a.done }

// wait is the record's outcome.
func (a *archiving) wait() error {
	if a.pending() {
		a.err, a.done = <-a.result, true
	}
	return a.err
}

// makeDurable commits the spool file while the record is being made
// durable, and waits for the record: a spooled message without its record
// must not go out (the caller's Abort removes it; after a crash the queue
// does). queue/spool.go says what a crash between the two leaves. Copies
// no copy names are dropped first: nobody reads them.
func (s *Server) makeDurable(ctx context.Context, log *slog.Logger, a *archiving, in *queue.Incoming, env queue.Envelope) error {
	in.Keep(env.Copies)
	if err := in.Commit(env, a.pending()); err != nil {
		s.abandon(ctx, log, a, "spool write failed; the sender was asked to retry")
		return err
	}
	if err := a.wait(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}

// abandon says in the record that a message archived was not queued: the
// client is told to try again (it will be a new message with a new id).
func (s *Server) abandon(ctx context.Context, log *slog.Logger, a *archiving, why string) {
	if s.cfg.Archive == nil || a.wait() != nil {
		return
	}
	ev := archive.Event{MessageID: a.id, Time: s.cfg.Now(), Kind: archive.Aborted, Reply: why}
	if err := s.cfg.Archive.RecordEvent(ctx, ev); err != nil {
		log.Error("cannot archive the abort", "err", err)
	}
}

// copiesGate holds the archive at the plain copy's end until the copies
// are made: then it has the final decisions, or the refusal the record
// must not outlive.
type copiesGate struct {
	done      chan struct{}
	decisions []record.Decision
	err       error
}

func (g *copiesGate) open(decisions []record.Decision, err error) {
	g.decisions, g.err = decisions, err
	close(g.done)
}

// endNotifier closes end when its reader has been read to its end. It
// keeps the reader's Size, by which the archive sizes its record. With a
// gate, its end waits for the gate, and is the gate's error if it has one.
type endNotifier struct {
	r    io.Reader
	end  chan struct{}
	gate *copiesGate
	done bool
}

func (n *endNotifier) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	if err == io.EOF && n.gate != nil {
		<-n.gate.done
		if n.gate.err != nil {
			return k, n.gate.err
		}
	}
	if err == io.EOF && !n.done {
		n.done = true
		close(n.end)
	}
	return k, err
}

// DecisionsAtEnd are the decisions with the sealed PDFs' hashes
// (archive.DecisionsAtEnd), known once the gate is open.
func (n *endNotifier) DecisionsAtEnd() []record.Decision {
	<-n.gate.done
	return n.gate.decisions
}

func (n *endNotifier) Size() int64 {
	if s, ok := n.r.(interface{ Size() int64 }); ok {
		return s.Size()
	}
	return 0
}
