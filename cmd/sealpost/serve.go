package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/console"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/internal/oauth"
	"github.com/sealpost/sealpost/internal/ops"
	"github.com/sealpost/sealpost/relay"
	"github.com/sealpost/sealpost/relay/submission"
)

func init() {
	register(&command{
		name:    "serve",
		args:    "[-c FILE]",
		summary: "run the relay",
		run:     runServe,
	})
	register(&command{
		name:    "loghash",
		args:    "ADDRESS",
		summary: "print the short hash that stands for ADDRESS in the logs",
		run:     runLoghash,
	})
}

// shutdownGrace is how long SIGTERM waits for sessions and deliveries in flight.
const shutdownGrace = 30 * time.Second

// lastConsentSync is how long a stop spends copying consent events.
const lastConsentSync = 300 * time.Millisecond

// service is the running relay and what is wired to it: the policy and the
// archive, the HTTP listeners, the mailbox readers, the control socket.
type service struct {
	configPath  string
	log         *slog.Logger
	grants      *oauth.Grants
	pa          *policyAndArchive
	srv         *relay.Server
	clients     atomic.Pointer[submission.ClientSettings]
	ops         *ops.Servers
	console     *console.Server
	ingest      *ingestRunner
	stopControl context.CancelFunc
	bg          *background
	offsite     *offsiteRunner
	started     time.Time
}

func runServe(ctx context.Context, c *cli, args []string) error {
	_, cfg, err := c.start(c.flags(), args, noArgs)
	if err != nil {
		return err
	}
	if owner, ok := fsutil.ForeignOwner(cfg.DataDir); ok {
		return fmt.Errorf("data_dir %s belongs to %s, and the relay as root would make files %s cannot open: start the service (systemctl start sealpost), or run it as that user: sudo -u %s sealpost serve -c %s",
			cfg.DataDir, owner.Name, owner.Name, owner.Name, cfg.Path)
	}
	log := newLogger(cfg, c.stderr)
	if os.Getenv("GOGC") == "" {
		// The live heap is small (tens of MB) and bodies stream: collecting
		// less often trades a little memory for a tenth of the CPU.
		debug.SetGCPercent(300)
		bulkGCPercent = 100
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// GOGC 300 alone lets the heap grow to four times what is live,
		// and while large messages are sealed or encrypted that is
		// hundreds of MB; a soft limit makes the collector work harder
		// near it instead (measured in the realistic mix with sealed PDFs:
		// 164 MB peak RSS without, 129 MB with 100 MiB).
		debug.SetMemoryLimit(2*cfg.SMTP.MaxMessageBytes + 32<<20)
	}
	s := &service{configPath: c.configPath, log: log, grants: oauth.NewGrants(log), started: time.Now()}
	if err := s.start(ctx, cfg); err != nil {
		s.stop(time.Second)
		if ctx.Err() != nil {
			log.Info("stopped while starting", "err", err)
			return nil
		}
		return err
	}
	s.serveUntil(ctx)
	s.stop(shutdownGrace)
	log.Info("stopped")
	return nil
}

// bulkGCPercent is the collector's target while the relay copies many
// records at once (the consent registry after an import); 0 leaves it as
// it is (GOGC set by the admin). Such a copy keeps 5 to 8 MB live, which
// GOGC 300 lets grow fourfold: 100,000 consents peaked at 68 to 76 MB RSS,
// at 100 (and held to the indexer's pace) at 54 to 56 MB (README, "The
// record at scale"). Mail accepted meanwhile is collected as often, for
// the seconds the copy takes.
var (
	bulkGCPercent int
	bulkGC        struct {
		sync.Mutex
		copies  int
		percent int // to go back to when the last copy ends
	}
)

// duringBulkCopy lowers the collector's target until the returned func is
// called (by every caller, when copies overlap).
func duringBulkCopy() (done func()) {
	if bulkGCPercent == 0 {
		return func() {}
	}
	bulkGC.Lock()
	defer bulkGC.Unlock()
	if bulkGC.copies == 0 {
		bulkGC.percent = debug.SetGCPercent(bulkGCPercent)
	}
	bulkGC.copies++
	return func() {
		bulkGC.Lock()
		defer bulkGC.Unlock()
		if bulkGC.copies--; bulkGC.copies == 0 {
			debug.SetGCPercent(bulkGC.percent)
		}
	}
}

// start opens what the relay needs, starts it, then what stands beside it.
func (s *service) start(ctx context.Context, cfg *config.Config) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if p, ok := archiveKeyLeftBehind(cfg.Path); ok {
		s.log.Warn("the archive's private key is still on this server: move it offline and delete it here", "path", p)
	}
	red, err := redactor(cfg)
	if err != nil {
		return err
	}
	tlsConf, err := serverTLS(cfg, s.log)
	if err != nil {
		return err
	}
	if s.pa, err = openPolicyAndArchive(ctx, cfg, s.log); err != nil {
		return err
	}
	reg, metrics := newMetricsRegistry(s.pa.arch)
	s.bg = startBackground(cfg, s.pa.arch, s.log)
	registerServiceMetrics(reg, cfg, s.bg)
	if s.offsite, err = startOffsite(cfg, s.pa.arch, s.log); err != nil {
		return err
	}
	registerOffsiteMetrics(reg, s.offsite)
	cs := clientSettings(cfg)
	s.clients.Store(&cs)
	if s.srv, err = newRelay(cfg, s.pa, s.grants, tlsConf, metrics, red.Hash, s.log); err != nil {
		return err
	}
	addrs, err := s.srv.Start()
	if err != nil {
		return err
	}
	if s.ops, err = startOps(cfg, &s.clients, s.srv, reg, s.pa.arch, tlsConf, s.log, s.offsite.readyNote); err != nil {
		return err
	}
	if err := s.startConsole(cfg, tlsConf); err != nil {
		return err
	}
	s.ingest = &ingestRunner{pa: s.pa, srv: s.srv, log: s.log, redact: red.Hash, grants: s.grants}
	if err := s.ingest.start(cfg); err != nil {
		return err
	}
	s.serveControl(cfg)
	s.log.Info("sealpost is running", "submission", fmtAddr(addrs.Submission), "submissions", fmtAddr(addrs.Submissions),
		"upstream", cfg.Upstream.Address, "data_dir", cfg.DataDir)
	return nil
}

// serveControl answers `sealpost queue`, the archive commands and reloads
// on the control socket, and keeps the archive's copy of the consent
// history current.
func (s *service) serveControl(cfg *config.Config) {
	ctx, stop := context.WithCancel(context.Background())
	s.stopControl = stop
	go s.pa.consentSyncLoop(ctx, s.log)
	handlers := archiveHandlers(s.pa.arch, cfg)
	handlers["GET /status"] = s.serveStatus
	handlers["POST /activity"] = s.serveActivity
	handlers["POST /reload"] = func(w http.ResponseWriter, r *http.Request) {
		if err := s.reload(); err != nil {
			http.Error(w, `{"error":`+quoteJSON(err.Error())+`}`, http.StatusBadRequest)
			return
		}
		w.Write([]byte("{}"))
	}
	if err := s.srv.ServeControl(ctx, cfg.ControlPath(), handlers); err != nil {
		s.log.Warn("no control socket: `sealpost queue` will not reach this relay", "err", err)
	}
}

// serveUntil tells systemd the relay is ready and reloads the configuration
// on SIGHUP, until ctx ends.
func (s *service) serveUntil(ctx context.Context) {
	if err := sdNotify("READY=1"); err != nil {
		s.log.Warn("cannot tell systemd the relay is ready", "err", err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			sdNotify("RELOADING=1")
			if err := s.reload(); err != nil {
				s.log.Error("configuration not reloaded; still running with the previous one", "err", err)
			}
			sdNotify("READY=1")
		case <-ctx.Done():
			sdNotify("STOPPING=1")
			s.log.Info("shutting down: finishing sessions and deliveries in flight", "grace", shutdownGrace)
			return
		}
	}
}

// stop ends what start started, newest first, giving sessions and
// deliveries in flight up to grace. Once the control socket ran, the last
// consent events are copied into the archive before it closes.
func (s *service) stop(grace time.Duration) {
	s.offsite.stop()
	if s.console != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.console.Shutdown(ctx)
		cancel()
	}
	if s.ingest != nil {
		s.ingest.stop()
	}
	if s.srv != nil {
		s.srv.Shutdown(grace)
	}
	if s.stopControl != nil {
		s.stopControl()
		// The last events, as far as a moment allows: a stop must not wait
		// for a large import, which the next start copies on.
		ctx, cancel := context.WithTimeout(context.Background(), lastConsentSync)
		if err := s.pa.syncConsent(ctx); err != nil {
			s.log.Warn("not every consent event was copied into the archive before stopping; the next start copies the rest", "err", err)
		}
		cancel()
	}
	if s.bg != nil {
		s.bg.stop()
	}
	if s.ops != nil {
		s.ops.Shutdown(context.Background())
	}
	if s.pa != nil {
		s.pa.close()
	}
}

// reload applies what can change without dropping sessions: accounts,
// whatever the policy takes (internal domains, notice, content rules), what
// mail clients are told, the mailbox readers.
func (s *service) reload() error {
	cfg, err := config.Load(s.configPath)
	if err != nil {
		return err
	}
	accounts, err := relayAccounts(cfg, s.grants)
	if err != nil {
		return err
	}
	if err := s.pa.reload(cfg); err != nil {
		return err
	}
	if err := s.srv.SetAccounts(accounts); err != nil {
		return err
	}
	s.srv.SetPartialSends(cfg.Policy.AllowPartialSends())
	if s.console != nil {
		if err := s.console.SetLogins(consoleLogins(cfg)); err != nil {
			return err
		}
		s.console.SetRequireTOTPForAdmins(cfg.Console.RequireTOTPForAdmins)
	}
	cs := clientSettings(cfg)
	s.clients.Store(&cs)
	if err := s.ingest.start(cfg); err != nil {
		return err
	}
	s.log.Info("configuration reloaded", "accounts", len(accounts))
	return nil
}

func runLoghash(ctx context.Context, c *cli, args []string) error {
	pos, cfg, err := c.start(c.flags(), args, oneArg("needs one ADDRESS"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.LogHashKey()); err != nil {
		return errors.New("no log hash key yet: sealpost serve makes it on first start")
	}
	r, err := redactor(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, r.Hash(pos[0]))
	return nil
}

func fmtAddr(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

func quoteJSON(s string) string {
	return fmt.Sprintf("%q", s)
}
