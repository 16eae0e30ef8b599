package relay

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/ids"
	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// maxSessionErrors closes a session that keeps getting refusals: a client
// that is probing, not sending.
const maxSessionErrors = 20

type backend struct{ s *Server }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	if b.s.closing.Load() {
		return nil, errShuttingDown
	}
	f := frontOf(c.Conn())
	isTLS := f != nil && f.sec != nil
	ip := clientIP(c.Conn().RemoteAddr())
	remote := prefixOf(ip).String()
	if b.s.closing.Load() {
		closeAfterReply(c.Conn())
	}
	if helloTooLong(c) {
		b.s.metrics.refused.WithLabelValues("ehlo", "long_command").Inc()
		return nil, errLongCommand
	}
	return &session{s: b.s, conn: c, tls: isTLS, ip: ip, remote: remote, log: b.s.log.With("session", randomToken())}, nil
}

// maxCommandLine is RFC 5321's limit for a command line, CRLF included.
// go-smtp's own line limit must admit the long body lines sealpost
// re-encodes, so the commands that carry a client's words are measured here:
// EHLO's domain, and MAIL's parameters (paths are limited to 256 octets by
// the address checks).
const maxCommandLine = 512

func helloTooLong(c *smtp.Conn) bool {
	return len("EHLO ")+len(c.Hostname())+2 > maxCommandLine
}

func mailLineLength(from string, opts *smtp.MailOptions) int {
	n := len("MAIL FROM:<>\r\n") + len(from)
	if opts == nil {
		return n
	}
	if opts.Body != "" {
		n += len(" BODY=") + len(opts.Body)
	}
	if opts.Size > 0 {
		n += len(" SIZE=") + len(strconv.FormatInt(opts.Size, 10))
	}
	if opts.Auth != nil {
		n += len(" AUTH=") + len(*opts.Auth)
	}
	return n
}

type session struct {
	s      *Server
	conn   *smtp.Conn
	tls    bool
	ip     netip.Addr
	remote string
	log    *slog.Logger

	account *Account
	from    string
	rcpts   []record.Decision
	errors  int
}

// fail maps err to the client's reply, counting refusals; after too many the
// session is ended.
func (s *session) fail(stage string, err error) error {
	r := reply(context.Background(), s.log, stage, err)
	if r == nil {
		return nil
	}
	var se *smtp.SMTPError
	if errors.As(r, &se) {
		s.s.metrics.refused.WithLabelValues(stage, refusalReason(stage, err, se)).Inc()
	}
	s.errors++
	if s.errors >= maxSessionErrors {
		s.log.Warn("closing a session after too many errors", "errors", s.errors)
		closeAfterReply(s.conn.Conn())
		return errTooManyErrors
	}
	return r
}

func (s *session) AuthMechanisms() []string {
	if !s.tls {
		return nil // AUTH is neither offered nor accepted before TLS
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.tls {
		return nil, s.fail("auth", errNeedTLS)
	}
	if helloTooLong(s.conn) { // the EHLO after STARTTLS
		return nil, s.fail("auth", errLongCommand)
	}
	check := func(username, password string) error { return s.login(username, password) }
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return plainServer(check), nil
	case sasl.Login:
		return &loginServer{auth: check}, nil
	}
	return nil, s.fail("auth", errUnknownMech)
}

func (s *session) login(username, password string) error {
	if s.account != nil {
		return smtpErr(503, smtp.EnhancedCode{5, 5, 1}, "Already authenticated")
	}
	if !validSASLText(username) {
		return s.fail("auth", errBadAuthData)
	}
	now := s.s.cfg.Now()
	keys := s.s.throttle.keys(now, s.ip, username)
	if s.s.throttle.blocked(now, keys...) {
		s.log.Warn("login refused: too many failures", "user", username)
		s.s.metrics.authFailures.WithLabelValues("throttled").Inc()
		return s.fail("auth", errAuthThrottled)
	}
	acct, ok := s.s.accounts.Load().verify(username, password, now)
	if !ok {
		wait := s.s.throttle.fail(now, keys...)
		s.log.Warn("login failed", "user", username, "delay", wait)
		s.s.metrics.authFailures.WithLabelValues("bad_credentials").Inc()
		if wait > 0 {
			s.s.cfg.AuthDelay(context.Background(), wait)
		}
		return s.fail("auth", errBadCredentials)
	}
	s.s.throttle.succeeded(now, s.ip, acct.Username)
	s.account = acct
	s.log = s.log.With("account", acct.Username)
	s.log.Info("logged in")
	return nil
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if helloTooLong(s.conn) || mailLineLength(from, opts) > maxCommandLine {
		return s.fail("mail", errLongCommand)
	}
	if s.account == nil {
		return s.fail("mail", errAuthRequired)
	}
	if from == "" {
		return s.fail("mail", errNullSender)
	}
	n, err := addr.Strict(from)
	var np *addr.NotPlainError
	if errors.As(err, &np) {
		return s.fail("mail", errNotPlain(553, smtp.EnhancedCode{5, 1, 7}, "", np))
	}
	if err != nil {
		return s.fail("mail", smtpErr(553, smtp.EnhancedCode{5, 1, 7}, fmt.Sprintf("<%s>: invalid sender address", textutil.OneLine(from))))
	}
	if !s.account.owns(n) {
		return s.fail("mail", smtpErr(550, smtp.EnhancedCode{5, 7, 1},
			fmt.Sprintf("<%s> is not an address of account %s; send as one of your own addresses", textutil.OneLine(from), s.account.Username)))
	}
	// What goes out (the provider's MAIL FROM, Return-Path, the record, a
	// bounce's recipient) is the address the account was checked against.
	s.from = n
	s.rcpts = nil
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.account == nil {
		return s.fail("rcpt", errAuthRequired)
	}
	if s.s.closing.Load() {
		return s.fail("rcpt", errShutdown)
	}
	n, err := addr.Strict(to)
	var np *addr.NotPlainError
	if errors.As(err, &np) {
		return s.fail("rcpt", errNotPlain(550, smtp.EnhancedCode{5, 1, 3}, "", np))
	}
	if err != nil {
		return s.fail("rcpt", smtpErr(550, smtp.EnhancedCode{5, 1, 3}, fmt.Sprintf("<%s>: not a valid recipient address (%s)", textutil.OneLine(to), reasonOf(err))))
	}
	for _, d := range s.rcpts {
		if d.Address == n {
			return nil // the same recipient twice gets one copy
		}
	}
	ctx := context.Background()
	d, err := s.s.cfg.Policy.Decide(ctx, s.account.Username, n)
	if err != nil {
		return s.fail("rcpt", err)
	}
	if d.Address == "" {
		d.Address = n
	}
	// The copies go to the address that was decided on, not to the text
	// typed: the provider, the outbox's Delivered-To and the record see it.
	d.Recipient = d.Address
	if d.Protection == record.Refused {
		s.log.Info("recipient refused", "rcpt", s.s.cfg.Redact(n))
		if s.s.cfg.Archive != nil {
			ref := archive.Refusal{Time: s.s.cfg.Now(), Account: s.account.Username, Recipient: n, Reason: d.Reason}
			if err := s.s.cfg.Archive.RecordRefusal(ctx, ref); err != nil {
				// The refusal stands either way; only its record is missing.
				s.log.Error("cannot archive a refusal", "err", err)
			}
		}
		return s.fail("rcpt", &rules.Refusal{Reason: d.Reason})
	}
	s.rcpts = append(s.rcpts, d)
	s.log.Debug("recipient accepted", "rcpt", s.s.cfg.Redact(n), "protection", d.Protection)
	return nil
}

func reasonOf(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 && errors.Is(err, addr.ErrInvalid) {
		return msg[i+2:]
	}
	return "invalid"
}

func (s *session) Data(r io.Reader) error {
	f := frontOf(s.conn.Conn())
	if b := f.body(); b != nil {
		// The message is read off the connection directly (frontConn).
		defer b.finish()
		r = b
	} else {
		// BDAT: go-smtp reads the chunks through f while this runs.
		f.beginTransfer()
		defer f.endTransfer()
	}
	if s.account == nil {
		return s.fail("data", errAuthRequired)
	}
	// A message whose DATA was answered 354 is taken in even when a
	// shutdown starts meanwhile (RCPT refuses new transactions once it has,
	// and Shutdown waits for this one), unless the grace period is over.
	if !s.s.beginInflight() {
		return s.fail("data", errShutdown)
	}
	defer s.s.inflight.Done()
	id, err := s.s.accept(context.Background(), s.log, s.account, s.from, s.rcpts, r, false)
	if err != nil {
		if ended := f.endedBy(); ended != nil {
			// What the BDAT reader made of the closed connection aside,
			// this is why (and the client has been told).
			err = ended
		}
		return s.fail("data", err)
	}
	s.s.metrics.accepted.Inc()
	return smtpErr(250, smtp.EnhancedCode{2, 0, 0}, "OK: queued as "+id)
}

// accept spools, transforms, archives and queues one message. The client is
// told 250 only when this returns nil: the copies are in the spool and the
// message is in the archive, both fsynced. autoReplied marks a message
// sealpost wrote itself (RFC 3834), which nothing a client submits may claim.
func (srv *Server) accept(ctx context.Context, log *slog.Logger, account *Account, from string, rcpts []record.Decision, r io.Reader, autoReplied bool) (string, error) {
	cfg := &srv.cfg
	now := cfg.Now()
	id := ids.New(now)
	log = log.With("id", id)

	in, err := srv.spool.newIncoming(id)
	if err != nil {
		return "", err
	}
	committed := false
	defer func() {
		if !committed {
			in.abort()
		}
	}()

	strict := &strictReader{r: r}
	br := dataReaders.Get().(*bufio.Reader)
	br.Reset(strict)
	defer func() { br.Reset(nil); dataReaders.Put(br) }()
	rawHeader, err := readHeaderSection(br)
	if err != nil {
		return "", err
	}
	hdr, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(rawHeader)))
	if err != nil {
		return "", smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message refused: its header section cannot be parsed")
	}
	hdr, err = prepareHeader(hdr, account, cfg.Hostname, id, now)
	if err != nil {
		return "", err
	}
	if autoReplied {
		hdr.Set("Auto-Submitted", "auto-replied")
	}
	var head bytes.Buffer
	if err := textproto.WriteHeader(&head, hdr); err != nil {
		return "", err
	}

	// The policy reads the message straight off the wire: the submitted
	// message itself is never stored, only the copies made from it.
	sub := rules.Submission{ID: id, Account: account.Username, Sender: from, Decisions: rcpts}
	res, err := cfg.Policy.Prepare(ctx, sub, io.MultiReader(&head, br), in)
	if strict.err != nil {
		// Whatever the policy made of it, bad input is answered as such.
		return "", strict.err
	}
	if err != nil {
		var refusal *rules.Refusal
		if errors.As(err, &refusal) && cfg.Archive != nil {
			ref := archive.Refusal{Time: now, Account: account.Username, Reason: refusal.Reason}
			if aerr := cfg.Archive.RecordRefusal(ctx, ref); aerr != nil {
				log.Error("cannot archive a refusal", "err", aerr)
			}
		}
		return "", err
	}
	if _, err := io.Copy(io.Discard, br); err != nil || strict.err != nil {
		// The policy stopped early; the rest of DATA must still be clean.
		return "", errors.Join(strict.err, err)
	}
	if err := checkCopies(sub, res); err != nil {
		return "", err
	}
	// The archive record and the encrypted copies are made at the same
	// time, on two cores: both are read from the plain copy, and for a large
	// message each is an encryption of all of it that the client waits for.
	// Then the spool file and the record are made durable at the same time
	// too (see spool.go on what a crash between the two leaves).
	var archived chan error
	var bodyRead chan struct{} // closed once the archive has read the plain copy
	if cfg.Archive != nil {
		body, err := in.Open(res.Plain)
		if err != nil {
			return "", err
		}
		rec := archive.Message{ID: id, Time: now, Direction: archive.Outbound, Account: account.Username,
			Sender: from, Decisions: res.Decisions, Fired: res.Fired}
		archived = make(chan error, 1)
		bodyRead = make(chan struct{})
		go func() {
			defer body.Close()
			archived <- cfg.Archive.RecordMessage(ctx, rec, &endNotifier{r: body, end: bodyRead})
		}()
	}
	encErr := cfg.Policy.EncryptCopies(ctx, in, res)
	archiveDone, archiveErr := false, error(nil)
	if archived != nil {
		select {
		case <-bodyRead:
		case archiveErr = <-archived:
			archiveDone = true
		}
	}
	// waitArchive is the record's outcome.
	waitArchive := func() error {
		if archived != nil && !archiveDone {
			archiveErr, archiveDone = <-archived, true
		}
		return archiveErr
	}
	// Archived but not queued: say so in the record, then tell the client
	// to try again (it will be a new message with a new id).
	abort := func(why string) {
		if cfg.Archive == nil || waitArchive() != nil {
			return
		}
		ev := archive.Event{MessageID: id, Time: cfg.Now(), Kind: archive.Aborted, Reply: why}
		if aerr := cfg.Archive.RecordEvent(ctx, ev); aerr != nil {
			log.Error("cannot archive the abort", "err", aerr)
		}
	}
	if encErr != nil {
		abort("the encrypted copy could not be made; the sender was asked to retry")
		return "", encErr
	}
	if archiveErr != nil {
		return "", fmt.Errorf("archive: %w", archiveErr)
	}
	// Nobody reads a copy no copy names: the plain copy of a message that
	// goes out only encrypted, or one the policy wrote and then replaced.
	for name := range in.sections {
		if !copyNamed(res.Copies, name) {
			in.drop(name)
		}
	}
	e := newEntry(srv.spool, id, account.Username, from, now, res.Copies, false)
	if err := in.commit(e, archived != nil && !archiveDone); err != nil {
		abort("spool write failed; the sender was asked to retry")
		return "", err
	}
	if err := waitArchive(); err != nil {
		// The spooled message has no record: it must not go out (the
		// deferred abort removes it; after a crash the queue does).
		return "", fmt.Errorf("archive: %w", err)
	}
	in.confirm()
	committed = true
	srv.queue.add(e)
	log.Info("accepted", "recipients", len(rcpts), "copies", len(res.Copies))
	return id, nil
}

// endNotifier closes end when its reader has been read to its end. It
// keeps the reader's Size, by which the archive sizes its record.
type endNotifier struct {
	r    io.Reader
	end  chan struct{}
	done bool
}

func (n *endNotifier) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	if err == io.EOF && !n.done {
		n.done = true
		close(n.end)
	}
	return k, err
}

func (n *endNotifier) Size() int64 {
	if s, ok := n.r.(interface{ Size() int64 }); ok {
		return s.Size()
	}
	return 0
}

func copyNamed(copies []rules.Copy, name string) bool {
	for _, c := range copies {
		if c.Name == name {
			return true
		}
	}
	return false
}

// checkCopies makes sure the policy put every accepted recipient in exactly
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

func (s *session) Reset() {
	s.from = ""
	s.rcpts = nil
}

func (s *session) Logout() error { return nil }

// dataReaders recycles the buffer DATA is read through: one per message
// made the garbage collector a noticeable part of the relay's CPU.
var dataReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}
