package submission

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/loginthrottle"
	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// Relay is what a session hands its work to: the stages after the
// dialogue, which the relay package owns.
type Relay interface {
	// Decide decides about one recipient at RCPT (normalised by
	// addr.Strict). A refused recipient is an error holding a
	// *rules.Refusal, whose reason the client is told.
	Decide(ctx context.Context, account, recipient string) (record.Decision, error)
	// Accept takes in a message as the client sends it (msg ends with its
	// DATA). nil means it is durable and queued as id; ErrShuttingDown
	// that the relay takes no more messages in.
	Accept(ctx context.Context, log *slog.Logger, env Envelope, msg io.Reader) (Accepted, error)
	// RecordRefusal records a refusal the session made itself (a message
	// some of whose recipients were refused), giving it a reference if it
	// has none.
	RecordRefusal(ctx context.Context, log *slog.Logger, account string, refusal *rules.Refusal)
}

// Accepted is what a client is told of a message taken in: its queue id,
// and, when its copies to clients wait for the sender's office hours,
// until when ("Mon 7 Dec 09:00 (office hours)").
type Accepted struct {
	ID   string
	Held string
}

// Envelope is a message's transaction: the account that logged in, the
// sender it was checked against, and the recipients as decided at RCPT.
type Envelope struct {
	Account    *Account
	From       string
	Recipients []record.Decision
	// Refused are the recipients refused at RCPT while the others may have
	// the message (partial sends), for its record.
	Refused []RefusedRecipient
}

// RefusedRecipient is a recipient refused at RCPT, and its refusal's
// reference.
type RefusedRecipient struct{ Address, Ref string }

// Listening is how the two submission ports listen and what they bound:
// the relay's configuration hands it through as it is.
type Listening struct {
	Hostname        string
	Submission      string // STARTTLS listener address; "" for none
	Submissions     string // implicit-TLS listener address; "" for none
	TLS             *tls.Config
	MaxMessageBytes int64
	MaxRecipients   int
	Timeout         time.Duration // idle time between commands
	// GreetingWait is how long the STARTTLS port listens for a client that
	// talks before the greeting (refused 554 5.5.1); 0 turns the check off.
	GreetingWait time.Duration
	// MaxConnections bounds the open client connections on both ports
	// together; one more is answered 421 and closed. 0: no bound.
	MaxConnections int
	// MaxConnectionsPerAddress bounds those of one client address (an IPv6
	// /64), so that one host cannot take them all. 0: no bound.
	MaxConnectionsPerAddress int
	// TrustedNetworks are the practice's own networks: failed logins from
	// them count against the client's address only, never against the
	// account, so that failures from elsewhere cannot lock them out.
	TrustedNetworks []netip.Prefix
}

// Config is the SMTP side's settings.
type Config struct {
	Listening
	// AllowPartialSends lets a message go to the recipients accepted at
	// RCPT when others were refused there ([policy] partial_sends =
	// "allow"); otherwise DATA is refused, so that nothing reaches anybody.
	AllowPartialSends bool

	Relay   Relay
	Metrics *Metrics
	Logger  *slog.Logger
	// Redact turns a client's address into a keyed hash for logs.
	Redact func(string) string
	Now    func() time.Time
	// AuthDelay waits before a failed-login reply.
	AuthDelay func(ctx context.Context, d time.Duration)
}

// Server is the submission service on both ports.
type Server struct {
	cfg      Config
	log      *slog.Logger
	accounts atomic.Pointer[accounts]
	throttle *loginthrottle.Throttle
	metrics  *Metrics
	wire     *wireConfig
	servers  []*smtp.Server
	closing  atomic.Bool
	partial  atomic.Bool // partial sends allowed
}

// New checks the accounts and prepares the listeners; Start opens them.
func New(cfg Config, list []Account) (*Server, error) {
	if cfg.Relay == nil || cfg.Metrics == nil || cfg.Logger == nil || cfg.Redact == nil || cfg.Now == nil || cfg.AuthDelay == nil {
		return nil, errors.New("submission: incomplete configuration")
	}
	s := &Server{cfg: cfg, log: cfg.Logger, throttle: loginthrottle.New(cfg.TrustedNetworks), metrics: cfg.Metrics}
	s.partial.Store(cfg.AllowPartialSends)
	if err := s.SetAccounts(list); err != nil {
		return nil, err
	}
	s.wire = &wireConfig{hostname: cfg.Hostname, tls: cfg.Metrics.countTLS(cfg.TLS), timeout: cfg.Timeout,
		maxSize: cfg.MaxMessageBytes, metrics: cfg.Metrics, log: cfg.Logger}
	return s, nil
}

// SetAccounts replaces the accounts (on SIGHUP); sessions already logged in
// keep the account they authenticated with.
func (s *Server) SetAccounts(list []Account) error {
	as, err := newAccounts(list)
	if err != nil {
		return err
	}
	s.accounts.Store(as)
	return nil
}

// SetPartialSends changes AllowPartialSends (on SIGHUP) for the
// transactions that begin afterwards.
func (s *Server) SetPartialSends(allow bool) { s.partial.Store(allow) }

// Account is the account called username, nil if there is none.
func (s *Server) Account(username string) *Account {
	return s.accounts.Load().byName[username]
}

// Listeners opened by Start, for tests that listen on port 0.
type Listeners struct {
	Submission  net.Addr
	Submissions net.Addr
}

// Start opens the listeners. It returns once they listen; errors from
// serving are logged.
func (s *Server) Start() (Listeners, error) {
	var addrs Listeners
	var slots chan struct{}
	if s.cfg.MaxConnections > 0 {
		slots = make(chan struct{}, s.cfg.MaxConnections)
	}
	var perAddress *addressSlots
	if s.cfg.MaxConnectionsPerAddress > 0 {
		perAddress = newAddressSlots(s.cfg.MaxConnectionsPerAddress)
	}
	for _, port := range []struct {
		addr        string
		got         *net.Addr
		implicitTLS bool
	}{{s.cfg.Submission, &addrs.Submission, false}, {s.cfg.Submissions, &addrs.Submissions, true}} {
		if port.addr == "" {
			continue
		}
		l, err := net.Listen("tcp", port.addr)
		if err != nil {
			return addrs, fmt.Errorf("listen on %s: %w", port.addr, err)
		}
		*port.got = l.Addr()
		srv := s.newSMTP()
		s.servers = append(s.servers, srv)
		wl := listener{Listener: l, implicitTLS: port.implicitTLS, wire: s.wire, slots: slots, perAddress: perAddress, metrics: s.metrics, log: s.log}
		if !port.implicitTLS {
			// The client speaks first on an implicit-TLS port: its ClientHello.
			wl.greetingWait = s.cfg.GreetingWait
		}
		go srv.Serve(wl)
	}
	return addrs, nil
}

func (s *Server) newSMTP() *smtp.Server {
	srv := smtp.NewServer(&backend{s: s})
	srv.Domain = s.cfg.Hostname
	// No TLSConfig: the wire does TLS, go-smtp only ever serves sessions
	// already inside it (and so offers no STARTTLS).
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.MaxLineLength = maxBodyLineOctets + 2
	srv.ReadTimeout = s.cfg.Timeout
	srv.WriteTimeout = s.cfg.Timeout
	// go-smtp cannot tell the wire's TLS from none; the session offers and
	// takes AUTH only inside TLS (and the wire answers AUTH before TLS with
	// 538).
	srv.AllowInsecureAuth = true
	srv.ErrorLog = log.New(slogWriter{s.log}, "", 0)
	return srv
}

// Shutdown stops accepting connections and lets sessions in flight finish
// until ctx ends, then closes them: nothing not yet answered 250 was
// promised.
func (s *Server) Shutdown(ctx context.Context) {
	s.closing.Store(true)
	var wg sync.WaitGroup
	for _, srv := range s.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
			}
		}()
	}
	wg.Wait()
}

// slogWriter routes go-smtp's internal error log into slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("smtp server", "detail", textutil.OneLine(string(p)))
	return len(p), nil
}
