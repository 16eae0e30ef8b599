package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/textutil"
)

// job is one copy of a message for some of its recipients.
type job struct {
	id         string
	account    *Account // nil for notices of an account that no longer exists
	from       string
	recipients []string
	open       func() (io.ReadCloser, error)
}

// outcome is what became of one recipient of a job.
type outcome struct {
	recipient string
	err       error  // nil: the provider took it
	reply     string // the provider's reply, or what went wrong
	permanent bool   // a 5xx: retrying will not help
}

type deliverer interface {
	deliver(ctx context.Context, j *job) []outcome
	close()
}

func allOutcomes(j *job, err error, permanent bool) []outcome {
	out := make([]outcome, len(j.recipients))
	for i, r := range j.recipients {
		out[i] = outcome{recipient: r, err: err, reply: describe(err), permanent: permanent}
	}
	return out
}

func describe(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.EnhancedCode == (smtp.EnhancedCode{}) {
		return fmt.Sprintf("%d %s", se.Code, textutil.OneLine(se.Message))
	}
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], textutil.OneLine(se.Message))
	}
	if err == nil {
		return ""
	}
	return textutil.OneLine(err.Error())
}

// wireAddresses are the job's sender and recipients as they go out: in
// the normalised form the relay decided on (addr.Normalize). Since RCPT and
// MAIL keep only that form this changes nothing, except for a message
// spooled by a version that kept what the client typed.
func (j *job) wireAddresses() (from string, rcpts []string, err error) {
	// The errors leave the address out: they reach the log.
	if j.from != "" {
		if from, err = addr.Normalize(j.from); err != nil {
			return "", nil, errors.New("the sender is not a valid address")
		}
	}
	rcpts = make([]string, len(j.recipients))
	for i, r := range j.recipients {
		if rcpts[i], err = addr.Normalize(r); err != nil {
			return "", nil, errors.New("a recipient is not a valid address")
		}
	}
	return from, rcpts, nil
}

// UpstreamTLS is how sealpost talks to the provider.
type UpstreamTLS string

const (
	StartTLS    UpstreamTLS = "starttls"
	ImplicitTLS UpstreamTLS = "implicit"
	// NoTLS is only for a relay on the same machine (a local Postfix, a test
	// sink): configuration refuses it for any address that is not loopback,
	// and no credentials are ever sent over it.
	NoTLS UpstreamTLS = "none"
)

// smtpUpstream delivers to the provider's submission server. It keeps a few
// authenticated connections per account open between messages: a TLS
// handshake and a login per message would cost more than the message.
type smtpUpstream struct {
	addr    string
	mode    UpstreamTLS
	tls     *tls.Config
	helo    string
	timeout time.Duration
	// maxIdle is how many connections per account are kept open: as many
	// as deliveries run at once, so that none is opened per message.
	maxIdle int

	mu   sync.Mutex
	idle map[string][]*pooledClient
}

type pooledClient struct {
	c        *upstreamConn
	lastUsed time.Time
}

// upstreamConn is a client connection to the provider together with the
// connection its commands are written to, after TLS: sendBody writes the
// message there itself.
type upstreamConn struct {
	*smtp.Client
	conn  net.Conn
	isTLS bool
	// Transactions are sealpost's own (transaction): their replies are read
	// here, go-smtp's reader is used only around them and is empty then.
	r                    *textproto.Reader
	pipelining, eightBit bool
}

const (
	minIdlePerAccount = 4
	idleLifetime      = 30 * time.Second
)

func newSMTPUpstream(addr string, mode UpstreamTLS, tlsConf *tls.Config, helo string, timeout time.Duration) *smtpUpstream {
	return &smtpUpstream{addr: addr, mode: mode, tls: tlsConf, helo: helo, timeout: timeout, maxIdle: minIdlePerAccount, idle: map[string][]*pooledClient{}}
}

func poolKey(a *Account) string {
	if a == nil {
		return ""
	}
	return a.Username
}

// idleClient returns a pooled connection, or nil. Pooled connections ended
// their last transaction cleanly, so no RSET is needed before the next.
func (u *smtpUpstream) idleClient(a *Account) *upstreamConn {
	key := poolKey(a)
	u.mu.Lock()
	defer u.mu.Unlock()
	for len(u.idle[key]) > 0 {
		list := u.idle[key]
		pc := list[len(list)-1]
		u.idle[key] = list[:len(list)-1]
		if time.Since(pc.lastUsed) < idleLifetime {
			return pc.c
		}
		go pc.c.Close()
	}
	return nil
}

func (u *smtpUpstream) put(a *Account, c *upstreamConn) {
	key := poolKey(a)
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.idle[key]) >= u.maxIdle {
		c.Quit()
		return
	}
	u.idle[key] = append(u.idle[key], &pooledClient{c: c, lastUsed: time.Now()})
}

// errNoTLS is a provider that stopped offering STARTTLS: the message waits
// rather than going out in clear.
var errNoTLS = errors.New("the provider did not offer STARTTLS; sealpost never sends in clear, will retry")

func (u *smtpUpstream) dial(ctx context.Context, a *Account) (*upstreamConn, error) {
	var login sasl.Client
	if a != nil && a.UpstreamUsername != "" && a.UpstreamSASL != nil {
		// Before connecting: a token refresh may take a while, and the
		// provider would be kept waiting with a connection open.
		l, err := a.UpstreamSASL(ctx)
		if err != nil {
			return nil, fmt.Errorf("login to provider as %s: %w", a.UpstreamUsername, err)
		}
		login = l
	}
	d := net.Dialer{Timeout: u.timeout}
	conn, err := d.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, fmt.Errorf("connect to provider %s: %w", u.addr, err)
	}
	conn.SetDeadline(time.Now().Add(u.timeout))
	uc := &upstreamConn{conn: conn}
	switch u.mode {
	case ImplicitTLS:
		tc := tls.Client(conn, u.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS with provider %s: %w", u.addr, err)
		}
		uc.conn, uc.isTLS = tc, true
	case StartTLS:
		tc, err := u.startTLS(ctx, conn)
		if err != nil {
			conn.Close()
			return nil, err
		}
		// go-smtp expects a greeting first; the provider gave it before TLS.
		uc.conn, uc.isTLS = &greetedConn{Conn: tc, greeting: []byte("220 TLS established\r\n")}, true
	}
	conn.SetDeadline(time.Time{})
	c := smtp.NewClient(uc.conn)
	uc.Client = c
	c.CommandTimeout = u.timeout
	c.SubmissionTimeout = 2 * u.timeout
	if err := c.Hello(u.helo); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting from provider %s: %w", u.addr, smtpReply(err))
	}
	if a != nil && a.UpstreamUsername != "" {
		// go-sasl's PLAIN client would send the password over anything: check.
		if !uc.isTLS {
			c.Close()
			return nil, errors.New("refusing to send provider credentials without TLS")
		}
		if login == nil {
			login = sasl.NewPlainClient("", a.UpstreamUsername, a.UpstreamPassword)
		} else if ch, ok := login.(mechanismChooser); ok {
			_, offered := c.Extension("AUTH")
			ch.ChooseMechanism(strings.Fields(offered))
		}
		if err := c.Auth(login); err != nil {
			c.Close()
			return nil, fmt.Errorf("login to provider as %s: %w", a.UpstreamUsername, err)
		}
	}
	uc.pipelining, _ = c.Extension("PIPELINING")
	uc.eightBit, _ = c.Extension("8BITMIME")
	uc.r = textproto.NewReader(bufio.NewReader(uc.conn))
	return uc, nil
}

// mechanismChooser is a login (UpstreamSASL's) that can speak more than
// one mechanism: it is told those the provider offers.
type mechanismChooser interface{ ChooseMechanism(offered []string) }

// startTLS greets the provider, insists on STARTTLS (errNoTLS, retried later,
// if it is not offered) and upgrades. sealpost says these three commands
// itself rather than through go-smtp so that it holds the TLS connection the
// body is written to (sendBody).
func (u *smtpUpstream) startTLS(ctx context.Context, conn net.Conn) (*tls.Conn, error) {
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("greeting from provider %s: %w", u.addr, smtpReply(err))
	}
	if err := tp.PrintfLine("EHLO %s", u.helo); err != nil {
		return nil, fmt.Errorf("greeting from provider %s: %w", u.addr, smtpReply(err))
	}
	_, ext, err := tp.ReadResponse(250)
	if err != nil {
		return nil, fmt.Errorf("greeting from provider %s: %w", u.addr, smtpReply(err))
	}
	offered := false
	for _, line := range strings.Split(ext, "\n")[1:] {
		offered = offered || strings.EqualFold(strings.TrimSpace(line), "STARTTLS")
	}
	if !offered {
		return nil, errNoTLS
	}
	if err := tp.PrintfLine("STARTTLS"); err != nil {
		return nil, fmt.Errorf("STARTTLS with provider %s: %w", u.addr, smtpReply(err))
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("STARTTLS with provider %s: %w", u.addr, smtpReply(err))
	}
	// Anything that arrived after the 220 and before the handshake was
	// written by someone in the middle, in clear (CVE-2011-0411).
	if tp.R.Buffered() > 0 {
		return nil, fmt.Errorf("STARTTLS with provider %s: data before the TLS handshake, refusing the connection", u.addr)
	}
	tc := tls.Client(conn, u.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS with provider %s: %w", u.addr, err)
	}
	return tc, nil
}

// smtpReply turns a reply to sealpost's own commands before TLS into the
// *smtp.SMTPError go-smtp returns for all others.
func smtpReply(err error) error {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return err
	}
	se := &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	if code, msg, ok := strings.Cut(te.Msg, " "); ok {
		var ec smtp.EnhancedCode
		if n, _ := fmt.Sscanf(code, "%d.%d.%d", &ec[0], &ec[1], &ec[2]); n == 3 {
			se.EnhancedCode, se.Message = ec, msg
		}
	}
	return se
}

// greetedConn replays the provider's greeting to go-smtp, which reads one
// before its first command; the real one came before STARTTLS.
type greetedConn struct {
	net.Conn
	greeting []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.greeting) > 0 {
		n := copy(p, g.greeting)
		g.greeting = g.greeting[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

func (u *smtpUpstream) deliver(ctx context.Context, j *job) []outcome {
	if c := u.idleClient(j.account); c != nil {
		out, healthy, stale := c.transaction(j)
		if !stale {
			u.release(j.account, c, healthy)
			return out
		}
		// The provider closed the idle connection (no reply to MAIL, or
		// 421): nothing was sent; try a fresh connection.
		c.Close()
	}
	c, err := u.dial(ctx, j.account)
	if err != nil {
		// Even a 5xx here (a refused login, "554 no service") says nothing
		// about the recipients: the admin can fix it, so keep the message.
		return allOutcomes(j, err, false)
	}
	out, healthy, _ := c.transaction(j)
	u.release(j.account, c, healthy)
	return out
}

func (u *smtpUpstream) release(a *Account, c *upstreamConn, healthy bool) {
	if healthy {
		u.put(a, c)
	} else {
		c.Close()
	}
}

// transaction sends one copy over an open connection. With a provider that
// offers PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write
// and their replies are read together, as Postfix does: under load each
// round trip waits for both ends to be scheduled, and four per message
// instead of two left deliveries far behind acceptance in the benchmark.
//
// healthy says whether the connection may be reused. stale says MAIL got no
// reply at all, or 421: nothing was sent, and a pooled connection may just
// have been closed by the provider meanwhile.
func (c *upstreamConn) transaction(j *job) (out []outcome, healthy, stale bool) {
	from, rcpts, err := j.wireAddresses()
	if err != nil {
		return allOutcomes(j, err, true), true, false
	}
	// The copy is opened before anything is sent: DATA may go out with MAIL.
	body, err := j.open()
	if err != nil {
		return allOutcomes(j, fmt.Errorf("read spooled copy: %w", err), false), true, false
	}
	defer body.Close()
	c.conn.SetDeadline(time.Now().Add(c.CommandTimeout))
	defer c.conn.SetDeadline(time.Time{})

	mail := "MAIL FROM:<" + from + ">"
	if c.eightBit {
		mail += " BODY=8BITMIME" // as go-smtp's Mail says it
	}
	cmds := []string{mail}
	for _, r := range rcpts {
		cmds = append(cmds, "RCPT TO:<"+r+">")
	}
	cmds = append(cmds, "DATA")
	expect := func(i int) int {
		switch i {
		case 0:
			return 250
		case len(cmds) - 1:
			return 354
		}
		return 25 // 250 or 251
	}

	// replies[i] is the provider's answer to cmds[i] (nil: accepted). Without
	// PIPELINING a command goes out only when it can still matter: no RCPT
	// after a refused MAIL, no DATA without a recipient.
	var replies []error
	if c.pipelining {
		if err := c.send(cmds...); err != nil {
			return allOutcomes(j, err, false), false, true
		}
	}
	for i := range cmds {
		if !c.pipelining {
			if i > 0 && replies[0] != nil || i == len(cmds)-1 && !anyAccepted(replies[1:]) {
				break
			}
			if err := c.send(cmds[i]); err != nil {
				return allOutcomes(j, err, false), false, i == 0
			}
		}
		_, err := c.reply(expect(i))
		if err != nil && (!isSMTPReply(err) || replyCode(err) == 421) {
			// The connection is gone, or going (421): no body was sent,
			// nothing delivered.
			return allOutcomes(j, err, false), false, i == 0
		}
		replies = append(replies, err)
	}
	// A provider that says 354 although it refused MAIL or every RCPT gets
	// an empty message, which it refuses in turn: a pipelined DATA cannot be
	// taken back.
	dataErr := errNoRecipient
	if len(replies) == len(cmds) {
		dataErr = replies[len(cmds)-1]
	}
	if mailErr := replies[0]; mailErr != nil {
		if dataErr == nil {
			c.endEmptyData()
		}
		return allOutcomes(j, mailErr, isPermanent(mailErr)), c.reset() == nil, false
	}
	out = make([]outcome, len(j.recipients))
	var accepted []int
	for i, r := range j.recipients {
		out[i] = outcome{recipient: r}
		if err := replies[1+i]; err != nil {
			out[i].err, out[i].reply, out[i].permanent = err, describe(err), isPermanent(err)
		} else {
			accepted = append(accepted, i)
		}
	}
	if len(accepted) == 0 {
		if dataErr == nil {
			c.endEmptyData()
		}
		return out, c.reset() == nil, false
	}
	fail := func(err error) []outcome {
		for _, i := range accepted {
			out[i].err, out[i].reply, out[i].permanent = err, describe(err), isPermanent(err)
		}
		return out
	}
	if dataErr != nil {
		return fail(dataErr), c.reset() == nil, false
	}
	if err := sendBody(c.conn, body, c.CommandTimeout); err != nil {
		return fail(err), false, false
	}
	c.conn.SetDeadline(time.Now().Add(c.SubmissionTimeout))
	msg, err := c.reply(250)
	if err != nil {
		return fail(err), isSMTPReply(err), false
	}
	for _, i := range accepted {
		out[i].reply = "250 " + textutil.OneLine(msg)
	}
	return out, true, false
}

var errNoRecipient = errors.New("no recipient accepted")

func anyAccepted(replies []error) bool {
	for _, err := range replies {
		if err == nil {
			return true
		}
	}
	return false
}

// send writes commands in one write.
func (c *upstreamConn) send(cmds ...string) error {
	var b []byte
	for _, cmd := range cmds {
		b = append(append(b, cmd...), "\r\n"...)
	}
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("send to provider: %w", err)
	}
	return nil
}

// reply reads the provider's reply: an *smtp.SMTPError unless its code is
// the one expected (a one- or two-digit expect is a prefix).
func (c *upstreamConn) reply(expect int) (string, error) {
	_, msg, err := c.r.ReadResponse(expect)
	if err != nil {
		return "", smtpReply(err)
	}
	return msg, nil
}

// reset ends a transaction that did not send a message.
func (c *upstreamConn) reset() error {
	if err := c.send("RSET"); err != nil {
		return err
	}
	_, err := c.reply(250)
	return err
}

// endEmptyData ends a DATA the provider should have refused.
func (c *upstreamConn) endEmptyData() {
	if c.send(".") == nil {
		c.reply(0)
	}
}

// replyCode is the code of the provider's reply err carries, 0 when err is
// no reply (a network or TLS failure, a timeout).
func replyCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func isSMTPReply(err error) bool { return replyCode(err) != 0 }

// isPermanent: only a 5xx reply from the provider is final. Network and TLS
// failures, timeouts and 4xx are retried.
func isPermanent(err error) bool { return replyCode(err)/100 == 5 }

func (u *smtpUpstream) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, list := range u.idle {
		for _, pc := range list {
			pc.c.Quit()
		}
		delete(u.idle, k)
	}
}

// outbox "delivers" into a Maildir below the data dir: the newcomer's default,
// and a way for a practice to try sealpost without a provider. One file per
// copy and recipient, starting with Return-Path: and Delivered-To: as local
// delivery agents write them.
type outbox struct {
	dir     string
	seq     int64
	mu      sync.Mutex
	newSync *groupSync
}

func newOutbox(dir string) (*outbox, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
	}
	return &outbox{dir: dir, newSync: newGroupSync(filepath.Join(dir, "new"))}, nil
}

func (o *outbox) deliver(ctx context.Context, j *job) []outcome {
	from, rcpts, err := j.wireAddresses()
	if err != nil {
		return allOutcomes(j, err, true)
	}
	out := make([]outcome, len(j.recipients))
	for i, r := range j.recipients {
		name, err := o.write(j, from, rcpts[i])
		out[i] = outcome{recipient: r, err: err, reply: describe(err)}
		if err == nil {
			out[i].reply = "250 2.0.0 delivered to outbox as " + name
		}
	}
	return out
}

func (o *outbox) write(j *job, from, rcpt string) (string, error) {
	o.mu.Lock()
	o.seq++
	name := fmt.Sprintf("%d.%s_%d.sealpost", time.Now().Unix(), j.id, o.seq)
	o.mu.Unlock()
	body, err := j.open()
	if err != nil {
		return "", err
	}
	defer body.Close()
	tmp := filepath.Join(o.dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("outbox: %w", err)
	}
	_, err = fmt.Fprintf(f, "Return-Path: <%s>\r\nDelivered-To: %s\r\n", from, rcpt)
	if err == nil {
		_, err = io.Copy(f, body)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("outbox: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(o.dir, "new", name)); err != nil {
		return "", fmt.Errorf("outbox: %w", err)
	}
	return name, o.newSync.sync()
}

func (o *outbox) close() {}

// CheckUpstream logs in to the provider as a delivery would (TLS verified,
// credentials only over TLS) and says goodbye: `sealpost check` uses it.
func CheckUpstream(ctx context.Context, up Upstream, acct Account, helo string) error {
	u := newSMTPUpstream(up.Address, up.TLS, up.TLSConfig, helo, up.Timeout)
	c, err := u.dial(ctx, &acct)
	if err != nil {
		return err
	}
	return c.Quit()
}

// ProbeUpstream reaches the provider as a delivery would, for readiness when
// the queue has had nothing to deliver for a while. The outbox is always
// reachable.
func (s *Server) ProbeUpstream(ctx context.Context) error {
	if s.cfg.Upstream.Address == "outbox" {
		s.metrics.upstreamReached(s.cfg.Now())
		return nil
	}
	var acct Account
	for _, a := range s.accounts.Load().byName {
		if a.UpstreamUsername != "" {
			acct = *a
			break
		}
	}
	if err := CheckUpstream(ctx, s.cfg.Upstream, acct, s.cfg.Hostname); err != nil {
		return err
	}
	s.metrics.upstreamReached(s.cfg.Now())
	return nil
}

// UpstreamLastOK is when the provider was last reached (a delivery or a probe).
func (s *Server) UpstreamLastOK() time.Time { return s.metrics.UpstreamLastOK() }
