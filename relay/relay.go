package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/emersion/go-message/charset" // decode non-UTF-8 headers instead of failing on them
	"github.com/emersion/go-sasl"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/provider"
	"github.com/sealpost/sealpost/relay/queue"
	"github.com/sealpost/sealpost/relay/submission"
	"github.com/sealpost/sealpost/rules"
)

// Rules is what the relay asks of the practice's rules (implemented by
// rules.Policy): Decide per recipient at RCPT; after DATA, Prepare writes
// the plain copy and names every copy, then EncryptCopies writes the
// encrypted and sealed ones, while the relay archives the plain copy.
type Rules interface {
	Decide(ctx context.Context, account, recipient string) (record.Decision, error)
	Prepare(ctx context.Context, sub rules.Submission, msg io.Reader, out rules.Sink) (*rules.Result, error)
	EncryptCopies(ctx context.Context, out rules.Sink, res *rules.Result) error
}

// Archive is the clinical record as the relay writes it (implemented by
// archive.Archive). Each method returns only once what it was given is
// durable.
type Archive interface {
	RecordMessage(ctx context.Context, m archive.Message, body io.Reader) error
	RecordRefusal(ctx context.Context, r archive.RefusalRecord) error
	queue.Archive // delivery outcomes, and what a crash left
}

// ConsentCheck is asked before a copy goes out in clear on consent (see
// queue.ConsentCheck).
type ConsentCheck = queue.ConsentCheck

// SealedCheck is asked before a sealed copy goes out (see queue.SealedCheck).
type SealedCheck = queue.SealedCheck

// QueueOptions are the delivery schedule's settings.
type QueueOptions = queue.Options

// Listening is how the submission ports listen and what they bound
// (submission.Listening).
type Listening = submission.Listening

// UpstreamTLS is how sealpost talks to the provider.
type UpstreamTLS = provider.TLSMode

const (
	StartTLS    = provider.StartTLS
	ImplicitTLS = provider.ImplicitTLS
	// NoTLS is only for a relay on the same machine (provider.NoTLS).
	NoTLS = provider.NoTLS
)

// Config is everything the relay needs; cmd/sealpost fills it from sealpost.toml.
type Config struct {
	Listening
	Accounts []Account

	SpoolDir  string
	OutboxDir string // used when Upstream.Address is "outbox"
	Upstream  Upstream
	Queue     QueueOptions

	Rules Rules
	// ConsentCheck is asked before a copy goes out in clear on consent; nil
	// leaves consent to the check at RCPT.
	ConsentCheck ConsentCheck
	// SealedCheck is asked before a sealed copy goes out; nil leaves the
	// passphrase to the check when the copy is made.
	SealedCheck SealedCheck
	// AllowPartialSends lets a message go to its accepted recipients when
	// others were refused at RCPT ([policy] partial_sends = "allow");
	// otherwise such a message is refused (SetPartialSends changes it).
	AllowPartialSends bool
	Archive           Archive
	// Metrics receives the relay's counters; nil keeps them unexported.
	Metrics *Metrics

	Logger *slog.Logger
	// Redact turns a client's address into a keyed hash for logs.
	Redact func(string) string
	Now    func() time.Time
	// AuthDelay waits before a failed-login reply (tests replace the sleep).
	AuthDelay func(ctx context.Context, d time.Duration)
}

// Account is a therapist's login, the addresses it may send as, and how
// sealpost logs in to the provider on its behalf.
type Account struct {
	Username     string
	PasswordHash string
	Addresses    []string // as configured
	// UpstreamUsername and UpstreamPassword log in to the provider on the
	// account's behalf; the password was read from upstream_password_file.
	UpstreamUsername string
	UpstreamPassword string
	// UpstreamSASL, when set, logs in instead of the password (OAuth 2.0
	// providers): it is asked for a fresh client for every connection, as
	// the token it carries expires.
	UpstreamSASL func(ctx context.Context) (sasl.Client, error)
}

// Upstream is the provider's submission server.
type Upstream struct {
	Address string      // "outbox" or host:port
	TLS     UpstreamTLS // starttls, implicit, or none (loopback only)
	// TLSConfig verifies the provider (RootCAs from ca_file, ServerName).
	TLSConfig *tls.Config
	Timeout   time.Duration
}

// Listeners opened by Start, for tests that listen on port 0.
type Listeners = submission.Listeners

// Server is a running relay.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	smtp    *submission.Server
	queue   *queue.Queue
	logins  atomic.Pointer[map[string]*provider.Login] // by account

	closing  atomic.Bool
	inflight sync.WaitGroup // messages being accepted
	// stopping is set, under inflightMu, before Shutdown waits for
	// inflight: a message that begins after that point (its connection
	// outlived the grace period) is refused instead of running into a
	// closed spool, and no Add races the Wait.
	inflightMu sync.Mutex
	stopping   bool
}

// New opens the spool and prepares the listeners and delivery; Start
// begins both.
func New(cfg Config) (*Server, error) {
	if cfg.Rules == nil {
		return nil, errors.New("relay: no rules")
	}
	if cfg.Redact == nil {
		return nil, errors.New("relay: no redactor: client addresses must not reach the logs")
	}
	cfg = withDefaults(cfg)
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics}
	smtp, err := submission.New(submission.Config{Listening: cfg.Listening, AllowPartialSends: cfg.AllowPartialSends, Relay: s,
		Metrics: cfg.Metrics.smtp, Logger: cfg.Logger, Redact: cfg.Redact, Now: cfg.Now, AuthDelay: cfg.AuthDelay}, submissionAccounts(cfg.Accounts))
	if err != nil {
		return nil, err
	}
	s.smtp = smtp
	s.setLogins(cfg.Accounts)
	dlv, err := deliverer(cfg)
	if err != nil {
		return nil, err
	}
	var rec queue.Archive
	if cfg.Archive != nil {
		rec = cfg.Archive
	}
	s.queue, err = queue.Open(queue.Config{Dir: cfg.SpoolDir, Options: cfg.Queue, Deliverer: dlv, Archive: rec,
		Login: s.login, Consent: cfg.ConsentCheck, Sealed: cfg.SealedCheck, Hostname: cfg.Hostname, Log: s.log.With("component", "queue"),
		Redact: cfg.Redact, Now: cfg.Now, Metrics: cfg.Metrics.queue})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func withDefaults(cfg Config) Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AuthDelay == nil {
		cfg.AuthDelay = func(ctx context.Context, d time.Duration) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.MaxRecipients == 0 {
		cfg.MaxRecipients = 100
	}
	return cfg
}

// deliverer is the outbox, or the provider's submission server.
func deliverer(cfg Config) (provider.Deliverer, error) {
	if cfg.Upstream.Address == "outbox" {
		return provider.NewOutbox(cfg.OutboxDir)
	}
	if cfg.Upstream.TLS != NoTLS && cfg.Upstream.TLSConfig == nil {
		return nil, errors.New("relay: upstream TLS configuration missing")
	}
	up := providerConfig(cfg.Upstream, cfg.Hostname)
	up.IdlePerAccount = cfg.Queue.Workers
	return provider.NewUpstream(up), nil
}

func providerConfig(up Upstream, helo string) provider.Config {
	return provider.Config{Address: up.Address, TLS: up.TLS, TLSConfig: up.TLSConfig, Timeout: up.Timeout, Hello: helo}
}

func submissionAccounts(list []Account) []submission.Account {
	out := make([]submission.Account, len(list))
	for i, a := range list {
		out[i] = submission.Account{Username: a.Username, PasswordHash: a.PasswordHash, Addresses: a.Addresses}
	}
	return out
}

func providerLogin(a Account) *provider.Login {
	return &provider.Login{Account: a.Username, Username: a.UpstreamUsername, Password: a.UpstreamPassword, SASL: a.UpstreamSASL}
}

func (s *Server) setLogins(list []Account) {
	logins := make(map[string]*provider.Login, len(list))
	for _, a := range list {
		logins[a.Username] = providerLogin(a)
	}
	s.logins.Store(&logins)
}

// login is an account's login to the provider, nil for an account no
// longer configured.
func (s *Server) login(account string) *provider.Login { return (*s.logins.Load())[account] }

// SetAccounts replaces the accounts (on SIGHUP); sessions already logged in
// keep the account they authenticated with.
func (s *Server) SetAccounts(list []Account) error {
	if err := s.smtp.SetAccounts(submissionAccounts(list)); err != nil {
		return err
	}
	s.setLogins(list)
	return nil
}

// Start starts delivery and opens the listeners. It returns once both are
// running; errors from serving are logged.
func (s *Server) Start() (Listeners, error) {
	if err := s.queue.Start(); err != nil {
		return Listeners{}, err
	}
	return s.smtp.Start()
}

// Shutdown stops accepting, lets sessions in flight finish for up to grace
// (then closes them: nothing not yet answered 250 was promised), and stops
// delivery. Everything accepted stays in the spool for the next start.
func (s *Server) Shutdown(grace time.Duration) {
	s.closing.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.smtp.Shutdown(ctx)
	s.inflightMu.Lock()
	s.stopping = true
	s.inflightMu.Unlock()
	s.inflight.Wait()
	s.queue.Stop(grace)
}

// beginInflight registers a message being taken in; false once Shutdown
// no longer waits for new ones.
func (s *Server) beginInflight() bool {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	if s.stopping {
		return false
	}
	s.inflight.Add(1)
	return true
}

// SetReportInbox gives the queue the accounts' mailboxes, where delivery
// reports go straight into the INBOX (queue.ReportInbox).
func (s *Server) SetReportInbox(f queue.ReportInbox) { s.queue.SetReportInbox(f) }

// Queue returns what is queued (sealpost queue list).
func (s *Server) Queue() []queue.Message { return s.queue.List() }

// Retry makes a queued message due now; id may be a unique prefix.
func (s *Server) Retry(id string) (string, error) { return s.queue.Retry(id) }

// Drop removes a queued message for good; id may be a unique prefix.
func (s *Server) Drop(id string) (string, error) { return s.queue.Drop(id) }

// ServeControl listens on the control socket at path until ctx ends (see
// queue.ServeControl).
func (s *Server) ServeControl(ctx context.Context, path string, extra map[string]http.HandlerFunc) error {
	return s.queue.ServeControl(ctx, path, extra)
}

// CheckUpstream logs in to the provider as a delivery would (TLS verified,
// credentials only over TLS) and says goodbye: `sealpost check` uses it.
func CheckUpstream(ctx context.Context, up Upstream, acct Account, helo string) error {
	return provider.Check(ctx, providerConfig(up, helo), providerLogin(acct))
}

// ProbeUpstream reaches the provider as a delivery would, for readiness when
// the queue has had nothing to deliver for a while. The outbox is always
// reachable.
func (s *Server) ProbeUpstream(ctx context.Context) error {
	if s.cfg.Upstream.Address != "outbox" {
		var login *provider.Login
		for _, l := range *s.logins.Load() {
			if l.Username != "" {
				login = l
				break
			}
		}
		if err := provider.Check(ctx, providerConfig(s.cfg.Upstream, s.cfg.Hostname), login); err != nil {
			return err
		}
	}
	s.metrics.queue.UpstreamReached(s.cfg.Now())
	return nil
}

// UpstreamLastOK is when the provider was last reached (a delivery or a probe).
func (s *Server) UpstreamLastOK() time.Time { return s.metrics.UpstreamLastOK() }
