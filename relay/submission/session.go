package submission

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// maxSessionErrors closes a session that keeps getting refusals: a client
// that is probing, not sending.
const maxSessionErrors = 20

// backend is what go-smtp asks for a session at the client's first EHLO.
type backend struct{ s *Server }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	if b.s.closing.Load() {
		return nil, replyShuttingDown.smtp()
	}
	w := wireOf(c.Conn())
	isTLS := w != nil && w.sec != nil
	ip := clientIP(c.Conn().RemoteAddr())
	if b.s.closing.Load() {
		closeAfterReply(c.Conn())
	}
	if helloTooLong(c) {
		b.s.metrics.refused.WithLabelValues("ehlo", replyLongCommand.reason).Inc()
		return nil, replyLongCommand.smtp()
	}
	return &session{s: b.s, conn: c, tls: isTLS, ip: ip, log: b.s.log.With("session", randomToken())}, nil
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

// session is one client's SMTP session inside TLS, as go-smtp drives it.
type session struct {
	s    *Server
	conn *smtp.Conn
	tls  bool
	ip   netip.Addr
	log  *slog.Logger

	account *Account
	from    string
	rcpts   []record.Decision
	// refused are the transaction's recipients the rules refused at RCPT,
	// each with its refusal's reference; partial is whether the others
	// may have the message then (AllowPartialSends when MAIL came).
	refused []refusedRecipient
	partial bool
	errors  int
}

type refusedRecipient struct{ address, ref string }

// fail turns err into the client's reply, counting refusals; after too many
// the session is ended.
func (s *session) fail(stage string, err error) error {
	var r *reply
	var refusal *rules.Refusal
	if stage == "rcpt" && s.partial && errors.As(err, &refusal) {
		r = replyRecipientLeftOut.with(textutil.OneLine(refusal.Reason), refText(refusal))
	} else {
		r = replyFor(context.Background(), s.log, stage, err)
	}
	if r.reason != "" {
		s.s.metrics.refused.WithLabelValues(stage, r.reason).Inc()
	}
	s.errors++
	if s.errors >= maxSessionErrors {
		s.log.Warn("closing a session after too many errors", "errors", s.errors)
		closeAfterReply(s.conn.Conn())
		return replyTooManyErrors.smtp()
	}
	return r.smtp()
}

func (s *session) AuthMechanisms() []string {
	if !s.tls {
		return nil // AUTH is neither offered nor accepted before TLS
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.tls {
		return nil, s.fail("auth", replyNeedTLS)
	}
	if helloTooLong(s.conn) { // the EHLO after STARTTLS
		return nil, s.fail("auth", replyLongCommand)
	}
	check := func(username, password string) error { return s.login(username, password) }
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return plainServer(check), nil
	case sasl.Login:
		return &loginServer{auth: check}, nil
	}
	return nil, s.fail("auth", replyUnknownMechanism)
}

func (s *session) login(username, password string) error {
	if s.account != nil {
		return replyAlreadyLoggedIn.smtp()
	}
	if !validSASLText(username) {
		return s.fail("auth", replyBadAuthData)
	}
	now := s.s.cfg.Now()
	keys := s.s.throttle.Keys(now, s.ip, username)
	if s.s.throttle.Blocked(now, keys...) {
		s.log.Warn("login refused: too many failures", "user", username)
		s.s.metrics.authFailures.WithLabelValues("throttled").Inc()
		return s.fail("auth", replyAuthThrottled)
	}
	acct, ok := s.s.accounts.Load().verify(username, password, now)
	if !ok {
		wait := s.s.throttle.Fail(now, keys...)
		s.log.Warn("login failed", "user", username, "delay", wait)
		s.s.metrics.authFailures.WithLabelValues("bad_credentials").Inc()
		if wait > 0 {
			s.s.cfg.AuthDelay(context.Background(), wait)
		}
		return s.fail("auth", replyBadCredentials)
	}
	s.s.throttle.Succeeded(now, s.ip, acct.Username)
	s.account = acct
	s.log = s.log.With("account", acct.Username)
	s.log.Info("logged in")
	return nil
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if helloTooLong(s.conn) || mailLineLength(from, opts) > maxCommandLine {
		return s.fail("mail", replyLongCommand)
	}
	if s.account == nil {
		return s.fail("mail", replyAuthRequired)
	}
	if from == "" {
		return s.fail("mail", replyNullSender)
	}
	n, err := addr.Strict(from)
	var np *addr.NotPlainError
	if errors.As(err, &np) {
		return s.fail("mail", notPlainReply(replySenderNotPlain, "", np))
	}
	if err != nil {
		return s.fail("mail", replyBadSender.with(textutil.OneLine(from)))
	}
	if !s.account.Owns(n) {
		return s.fail("mail", replySenderNotAccounts.with(textutil.OneLine(from), s.account.Username))
	}
	// What goes out (the provider's MAIL FROM, Return-Path, the record, a
	// bounce's recipient) is the address the account was checked against.
	s.from = n
	s.rcpts, s.refused, s.partial = nil, nil, s.s.partial.Load()
	wireOf(s.conn.Conn()).answerOK(replySenderAccepted.with(n))
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.account == nil {
		return s.fail("rcpt", replyAuthRequired)
	}
	if s.s.closing.Load() {
		return s.fail("rcpt", ErrShuttingDown)
	}
	n, err := addr.Strict(to)
	var np *addr.NotPlainError
	if errors.As(err, &np) {
		return s.fail("rcpt", notPlainReply(replyRecipientNotPlain, "", np))
	}
	if err != nil {
		return s.fail("rcpt", replyBadRecipient.with(textutil.OneLine(to), reasonOf(err)))
	}
	for _, d := range s.rcpts {
		if d.Address == n {
			wireOf(s.conn.Conn()).answerOK(replyRecipientSameAgain.with(n))
			return nil // the same recipient twice gets one copy
		}
	}
	d, err := s.s.cfg.Relay.Decide(context.Background(), s.account.Username, n)
	if err != nil {
		var refusal *rules.Refusal
		if errors.As(err, &refusal) {
			s.refused = append(s.refused, refusedRecipient{address: n, ref: refusal.Ref})
			s.log.Info("recipient refused", "ref", refusal.Ref, "reason", refusal.Code, "rcpt", s.s.cfg.Redact(n))
		}
		return s.fail("rcpt", err)
	}
	s.rcpts = append(s.rcpts, d)
	s.log.Debug("recipient accepted", "rcpt", s.s.cfg.Redact(n), "protection", d.Protection)
	wireOf(s.conn.Conn()).answerOK(replyRecipientAccepted.with(n, howSent(d.Protection)))
	return nil
}

// howSent says, in a RCPT reply, how the recipient's copy is to be made:
// a decision, not a promise of delivery, which the provider makes later.
func howSent(p record.Protection) string {
	switch p {
	case record.Internal:
		return "a colleague inside the practice"
	case record.Encrypted:
		return "to be encrypted with their OpenPGP key"
	case record.Sealed:
		return "to be sealed in a PDF that opens with their passphrase"
	case record.Consented:
		return "unencrypted, with the client's written consent"
	case record.Professional:
		return "unencrypted, to a professional recipient on file"
	}
	return string(p)
}

// refusePartial refuses a message some of whose recipients were refused at
// RCPT (unless partial sends are allowed): a mail program that goes on to
// DATA after a refused recipient (most do; Thunderbird stops) would
// otherwise have it sent to the others, while the therapist, told that
// nothing was sent, believes nobody got it. The refusal is recorded under
// the first refused recipient's reference, so that looking that up shows
// both. It returns nil when the message may go on.
func (s *session) refusePartial() *rules.Refusal {
	if len(s.refused) == 0 || s.partial {
		return nil
	}
	names := make([]string, len(s.refused))
	for i, r := range s.refused {
		names[i] = fmt.Sprintf("<%s> (ref %s)", r.address, r.ref)
	}
	refusal := &rules.Refusal{Code: rules.RefusalPartialSend, Ref: s.refused[0].ref, Reason: strings.Join(names, ", ")}
	s.s.cfg.Relay.RecordRefusal(context.Background(), s.log, s.account.Username, refusal)
	s.log.Info("message refused", "ref", refusal.Ref, "reason", refusal.Code, "refused_recipients", len(s.refused), "accepted_recipients", len(s.rcpts))
	return refusal
}

func reasonOf(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": "); i >= 0 && errors.Is(err, addr.ErrInvalid) {
		return msg[i+2:]
	}
	return "invalid"
}

func (s *session) Data(r io.Reader) error {
	w := wireOf(s.conn.Conn())
	if b := w.body(); b != nil {
		// The message is read off the connection directly (wire.go).
		defer b.finish()
		r = b
	} else {
		// BDAT: go-smtp reads the chunks through w while this runs.
		w.beginTransfer()
		defer w.endTransfer()
	}
	if s.account == nil {
		return s.fail("data", replyAuthRequired)
	}
	if refusal := s.refusePartial(); refusal != nil {
		io.Copy(io.Discard, r) // the message still arrives; BDAT's chunks too
		return s.fail("data", refusal)
	}
	env := Envelope{Account: s.account, From: s.from, Recipients: s.rcpts}
	for _, r := range s.refused {
		env.Refused = append(env.Refused, RefusedRecipient{Address: r.address, Ref: r.ref})
	}
	acc, err := s.s.cfg.Relay.Accept(context.Background(), s.log, env, r)
	if err != nil {
		if ended := w.endedBy(); ended != nil {
			// What the BDAT reader made of the closed connection aside,
			// this is why (and the client has been told).
			err = ended
		}
		var refusal *rules.Refusal
		if errors.As(err, &refusal) {
			s.log.Info("message refused", "ref", refusal.Ref, "reason", refusal.Code)
		}
		return s.fail("data", err)
	}
	s.s.metrics.accepted.Inc()
	if acc.Held != "" {
		return replyAcceptedHeld.with(acc.ID, acc.Held).smtp()
	}
	return replyAccepted.with(acc.ID).smtp()
}

func (s *session) Reset() {
	s.from = ""
	s.rcpts, s.refused = nil, nil
}

func (s *session) Logout() error { return nil }
