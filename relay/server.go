// Package relay is sealpost's transport: the SMTP submission server mail
// clients talk to (go-smtp), authentication, the durable spool and queue,
// delivery to the provider with retries, and delivery status notifications.
// It asks a Policy what may go out and hands every accepted message to a
// Recorder (the archive) before it answers 250; it decides no policy itself.
package relay

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

	_ "github.com/emersion/go-message/charset" // decode non-UTF-8 headers instead of failing on them
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// Policy decides per recipient at RCPT and transforms the message after DATA
// (implemented by rules.Policy): Prepare writes the plain copy and names
// every copy, EncryptCopies then writes the encrypted ones, while the relay
// archives the plain copy.
type Policy interface {
	Decide(ctx context.Context, account, recipient string) (record.Decision, error)
	Prepare(ctx context.Context, sub rules.Submission, msg io.Reader, out rules.Sink) (*rules.Result, error)
	EncryptCopies(ctx context.Context, out rules.Sink, res *rules.Result) error
}

// Recorder is the clinical record (implemented by archive.Archive). Each
// method returns only once what it was given is durable.
type Recorder interface {
	RecordMessage(ctx context.Context, m archive.Message, body io.Reader) error
	RecordEvent(ctx context.Context, e archive.Event) error
	RecordRefusal(ctx context.Context, r archive.Refusal) error
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

// Config is everything the relay needs; cmd/sealpost fills it from sealpost.toml.
type Config struct {
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
	Accounts        []Account

	SpoolDir  string
	OutboxDir string // used when Upstream.Address is "outbox"
	Upstream  Upstream
	Queue     QueueOptions

	Policy Policy
	// ConsentCheck is asked before a copy goes out in clear on consent; nil
	// leaves consent to the check at RCPT.
	ConsentCheck ConsentCheck
	Archive      Recorder
	// Metrics receives the relay's counters; nil keeps them unexported.
	Metrics *Metrics

	Logger *slog.Logger
	// Redact turns a client's address into a keyed hash for logs.
	Redact func(string) string
	Now    func() time.Time
	// AuthDelay waits before a failed-login reply (tests replace the sleep).
	AuthDelay func(ctx context.Context, d time.Duration)
}

// Upstream is the provider's submission server.
type Upstream struct {
	Address string      // "outbox" or host:port
	TLS     UpstreamTLS // starttls, implicit, or none (loopback only)
	// TLSConfig verifies the provider (RootCAs from ca_file, ServerName).
	TLSConfig *tls.Config
	Timeout   time.Duration
}

// Server is a running relay.
type Server struct {
	cfg      Config
	log      *slog.Logger
	accounts atomic.Pointer[accounts]
	throttle *throttle
	metrics  *Metrics
	spool    *spool
	queue    *queue

	servers  []*smtp.Server
	front    *frontConfig
	closing  atomic.Bool
	inflight sync.WaitGroup // DATA being processed
	// stopping is set, under inflightMu, before Shutdown waits for inflight:
	// a DATA that begins after that point (its connection outlived the
	// grace period) is refused instead of running into a closed spool, and
	// no Add races the Wait.
	inflightMu sync.Mutex
	stopping   bool
}

// New opens the spool (cleaning up what a crash left half-received) and
// prepares the listeners and delivery; Start begins both.
func New(cfg Config) (*Server, error) {
	if cfg.Policy == nil {
		return nil, errors.New("relay: no policy")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Redact == nil {
		return nil, errors.New("relay: no redactor: client addresses must not reach the logs")
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
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.MaxRecipients == 0 {
		cfg.MaxRecipients = 100
	}
	s := &Server{cfg: cfg, log: cfg.Logger, throttle: newThrottle(cfg.TrustedNetworks), metrics: cfg.Metrics}
	if err := s.SetAccounts(cfg.Accounts); err != nil {
		return nil, err
	}
	sp, cleaned, err := openSpool(cfg.SpoolDir)
	if err != nil {
		return nil, err
	}
	if cleaned > 0 {
		s.log.Warn("removed messages a crash left half-received; their senders were never told 250", "count", cleaned)
	}
	s.spool = sp
	var dlv deliverer
	if cfg.Upstream.Address == "outbox" {
		ob, err := newOutbox(cfg.OutboxDir)
		if err != nil {
			sp.close()
			return nil, err
		}
		dlv = ob
	} else {
		if cfg.Upstream.TLS != NoTLS && cfg.Upstream.TLSConfig == nil {
			sp.close()
			return nil, errors.New("relay: upstream TLS configuration missing")
		}
		u := newSMTPUpstream(cfg.Upstream.Address, cfg.Upstream.TLS, cfg.Upstream.TLSConfig, cfg.Hostname, cfg.Upstream.Timeout)
		u.maxIdle = max(cfg.Queue.Workers, minIdlePerAccount)
		dlv = u
	}
	s.queue = newQueue(&queue{
		opts: cfg.Queue, spool: sp, dlv: dlv, archive: cfg.Archive, hostname: cfg.Hostname,
		log: s.log.With("component", "queue"), redact: cfg.Redact, now: cfg.Now,
		account: func(name string) *Account { return s.accounts.Load().byName[name] },
		metrics: cfg.Metrics, consent: cfg.ConsentCheck,
	})
	cfg.Metrics.registerQueue(s.queue)
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

// Listeners opened by Start, for tests that listen on port 0.
type Listeners struct {
	Submission  net.Addr
	Submissions net.Addr
}

// Start opens the listeners and starts delivery. It returns once both are
// running; errors from serving are logged.
func (s *Server) Start() (Listeners, error) {
	var addrs Listeners
	if err := s.queue.start(); err != nil {
		return addrs, err
	}
	front := &frontConfig{hostname: s.cfg.Hostname, tls: s.metrics.countTLS(s.cfg.TLS), timeout: s.cfg.Timeout,
		maxSize: s.cfg.MaxMessageBytes, metrics: s.metrics, log: s.log}
	var slots chan struct{}
	if s.cfg.MaxConnections > 0 {
		slots = make(chan struct{}, s.cfg.MaxConnections)
	}
	var perAddress *addressSlots
	if s.cfg.MaxConnectionsPerAddress > 0 {
		perAddress = newAddressSlots(s.cfg.MaxConnectionsPerAddress)
	}
	s.front = front
	newSMTP := func() *smtp.Server {
		srv := smtp.NewServer(&backend{s: s})
		srv.Domain = s.cfg.Hostname
		// No TLSConfig: frontConn does TLS, go-smtp only ever serves
		// sessions already inside it (and so offers no STARTTLS).
		srv.MaxMessageBytes = s.cfg.MaxMessageBytes
		srv.MaxRecipients = s.cfg.MaxRecipients
		srv.MaxLineLength = maxBodyLineOctets + 2
		srv.ReadTimeout = s.cfg.Timeout
		srv.WriteTimeout = s.cfg.Timeout
		// go-smtp cannot tell frontConn's TLS from none; the session offers
		// and takes AUTH only inside TLS (and frontConn answers AUTH before
		// TLS with 538, DESIGN.md).
		srv.AllowInsecureAuth = true
		srv.ErrorLog = log.New(slogWriter{s.log}, "", 0)
		return srv
	}
	if s.cfg.Submission != "" {
		l, err := net.Listen("tcp", s.cfg.Submission)
		if err != nil {
			return addrs, fmt.Errorf("listen on %s: %w", s.cfg.Submission, err)
		}
		addrs.Submission = l.Addr()
		srv := newSMTP()
		s.servers = append(s.servers, srv)
		go srv.Serve(guardListener{Listener: l, front: front, slots: slots, perAddress: perAddress, metrics: s.metrics, greetingWait: s.cfg.GreetingWait, log: s.log})
	}
	if s.cfg.Submissions != "" {
		l, err := net.Listen("tcp", s.cfg.Submissions)
		if err != nil {
			return addrs, fmt.Errorf("listen on %s: %w", s.cfg.Submissions, err)
		}
		addrs.Submissions = l.Addr()
		srv := newSMTP()
		s.servers = append(s.servers, srv)
		go srv.Serve(guardListener{Listener: l, implicitTLS: true, front: front, slots: slots, perAddress: perAddress, metrics: s.metrics, log: s.log})
	}
	return addrs, nil
}

// Shutdown stops accepting, lets sessions in flight finish for up to grace
// (then closes them: nothing not yet answered 250 was promised), and stops
// delivery. Everything accepted stays in the spool for the next start.
func (s *Server) Shutdown(grace time.Duration) {
	s.closing.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
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
	s.inflightMu.Lock()
	s.stopping = true
	s.inflightMu.Unlock()
	s.inflight.Wait()
	s.queue.stop(grace)
	s.spool.close()
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

// Queue returns what is queued (sealpost queue list).
func (s *Server) Queue() []QueuedMessage { return s.queue.list() }

// Retry makes a queued message due now; id may be a unique prefix.
func (s *Server) Retry(id string) (string, error) { return s.queue.retry(id) }

// Drop removes a queued message for good; id may be a unique prefix.
func (s *Server) Drop(id string) (string, error) { return s.queue.drop(id) }

// QueueStats is the number of queued messages and the arrival of the oldest.
func (s *Server) QueueStats() (int, time.Time) { return s.queue.stats() }

// slogWriter routes go-smtp's internal error log into slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("smtp server", "detail", textutil.OneLine(string(p)))
	return len(p), nil
}
