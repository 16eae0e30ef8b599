package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/oauth"
	"github.com/sealpost/sealpost/internal/tlsconf"
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

func newLogger(c *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// redactor returns the keyed hash for client addresses in logs; its key is
// made on first use and kept in the data dir, so hashes stay stable across
// restarts and `sealpost loghash` can find an address's lines.
func redactor(c *config.Config) (*addr.Redactor, error) {
	path := c.LogHashKey()
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, key, 0o600); err != nil {
			return nil, fmt.Errorf("log hash key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("log hash key: %w", err)
	}
	return addr.NewRedactor(key)
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

// relayAccounts turns the config's accounts into the relay's, reading each
// upstream password file.
func relayAccounts(cfg *config.Config, grants *oauth.Grants) ([]relay.Account, error) {
	var out []relay.Account
	for _, a := range cfg.Accounts {
		ra := relay.Account{Username: a.Username, PasswordHash: a.PasswordHash, Addresses: a.Addresses, UpstreamUsername: a.UpstreamUsername}
		if a.UpstreamPasswordFile != "" {
			pw, err := config.ReadSecret(a.UpstreamPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("account %q: upstream_password_file: %w", a.Username, err)
			}
			ra.UpstreamPassword = pw
		}
		if a.UpstreamAuth == "oauth2" {
			g, err := oauthGrant(cfg, grants, a.Username)
			if err != nil {
				return nil, fmt.Errorf("account %q: %w", a.Username, err)
			}
			ra.UpstreamSASL = g.SASL(a.UpstreamUsername)
		}
		if cfg.Upstream.TLS == "none" {
			ra.UpstreamUsername = "" // never a password over plaintext
		}
		out = append(out, ra)
	}
	return out, nil
}

func upstreamConfig(cfg *config.Config) (relay.Upstream, error) {
	u := relay.Upstream{Address: cfg.Upstream.Address, TLS: relay.UpstreamTLS(cfg.Upstream.TLS), Timeout: cfg.Upstream.Timeout.D()}
	if u.Address == "outbox" || u.TLS == relay.NoTLS {
		return u, nil
	}
	host, _, _ := net.SplitHostPort(u.Address)
	conf, err := tlsconf.ClientTLS(host, cfg.Upstream.CAFile)
	if err != nil {
		return u, err
	}
	u.TLSConfig = conf
	return u, nil
}

// serverTLS is the submission certificate: the configured one, or a local CA
// and a certificate signed by it, made below data_dir on first start.
func serverTLS(cfg *config.Config, log *slog.Logger) (certFile, keyFile string, err error) {
	if cfg.SMTP.TLSCert != "" {
		return cfg.SMTP.TLSCert, cfg.SMTP.TLSKey, nil
	}
	certFile, keyFile, err = tlsconf.EnsureLocalCertificate(cfg.TLSDir(), cfg.SMTP.Hostname, time.Now())
	if err != nil {
		return "", "", err
	}
	log.Info("using a self-made certificate; import its CA into mail clients", "ca", filepath.Join(cfg.TLSDir(), "ca.pem"))
	return certFile, keyFile, nil
}

func runServe(ctx context.Context, c *cli, args []string) error {
	_, cfg, err := c.start(c.flags(), args, noArgs)
	if err != nil {
		return err
	}
	log := newLogger(cfg, c.stderr)
	if os.Getenv("GOGC") == "" {
		// The live heap is small (tens of MB) and bodies stream: collecting
		// less often trades a little memory for a tenth of the CPU.
		debug.SetGCPercent(300)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if p, ok := archiveKeyLeftBehind(cfg.Path); ok {
		log.Warn("the archive's private key is still on this server: move it offline and delete it here", "path", p)
	}
	red, err := redactor(cfg)
	if err != nil {
		return err
	}
	certFile, keyFile, err := serverTLS(cfg, log)
	if err != nil {
		return err
	}
	tlsConf, err := tlsconf.ServerTLS(certFile, keyFile)
	if err != nil {
		return err
	}
	grants := oauth.NewGrants(log)
	accounts, err := relayAccounts(cfg, grants)
	if err != nil {
		return err
	}
	up, err := upstreamConfig(cfg)
	if err != nil {
		return err
	}
	deps, err := openPolicyAndArchive(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer deps.close()
	reg, metrics := newMetricsRegistry(deps.arch)
	var clients atomic.Pointer[submission.ClientSettings]
	cs := clientSettings(cfg)
	clients.Store(&cs)

	srv, err := relay.New(relay.Config{
		Hostname:                 cfg.SMTP.Hostname,
		Submission:               cfg.SMTP.Submission,
		Submissions:              cfg.SMTP.Submissions,
		TLS:                      tlsConf,
		MaxMessageBytes:          cfg.SMTP.MaxMessageBytes,
		MaxRecipients:            cfg.SMTP.MaxRecipients,
		Timeout:                  cfg.SMTP.Timeout.D(),
		GreetingWait:             cfg.SMTP.GreetingWait.D(),
		MaxConnections:           cfg.SMTP.MaxConnections,
		MaxConnectionsPerAddress: cfg.SMTP.MaxConnectionsPerIP,
		TrustedNetworks:          cfg.SMTP.TrustedPrefixes(),
		Accounts:                 accounts,
		SpoolDir:                 cfg.SpoolDir(),
		OutboxDir:                cfg.OutboxDir(),
		Upstream:                 up,
		Queue: relay.QueueOptions{
			Workers: cfg.Upstream.Workers, Lifetime: cfg.Upstream.Lifetime.D(), DelayWarning: cfg.Upstream.DelayWarning.D(),
			RetryMin: cfg.Upstream.RetryMin.D(), RetryMax: cfg.Upstream.RetryMax.D(),
		},
		Rules:        deps.policy,
		ConsentCheck: deps.rules.RecheckConsent,
		Archive:      deps.archive,
		Metrics:      metrics,
		Logger:       log,
		Redact:       red.Hash,
	})
	if err != nil {
		return err
	}
	addrs, err := srv.Start()
	if err != nil {
		srv.Shutdown(time.Second)
		return err
	}
	ops, err := startOps(cfg, &clients, srv, reg, deps.arch, tlsConf, log)
	if err != nil {
		srv.Shutdown(time.Second)
		return err
	}
	defer ops.shutdown(context.Background())
	ing := &ingestRunner{deps: deps, srv: srv, log: log, redact: red.Hash, grants: grants}
	if err := ing.start(cfg); err != nil {
		srv.Shutdown(time.Second)
		return err
	}
	ctlCtx, stopCtl := context.WithCancel(context.Background())
	defer stopCtl()
	reload := func(w http.ResponseWriter, r *http.Request) {
		if err := reloadConfig(c.configPath, srv, deps, &clients, ing, log); err != nil {
			http.Error(w, `{"error":`+quoteJSON(err.Error())+`}`, http.StatusBadRequest)
			return
		}
		w.Write([]byte("{}"))
	}
	go deps.consentSyncLoop(ctlCtx, log)
	handlers := archiveHandlers(deps.arch, cfg)
	handlers["POST /reload"] = reload
	if err := srv.ServeControl(ctlCtx, cfg.ControlPath(), handlers); err != nil {
		log.Warn("no control socket: `sealpost queue` will not reach this relay", "err", err)
	}
	log.Info("sealpost is running", "submission", fmtAddr(addrs.Submission), "submissions", fmtAddr(addrs.Submissions),
		"upstream", cfg.Upstream.Address, "data_dir", cfg.DataDir)

	if err := sdNotify("READY=1"); err != nil {
		log.Warn("cannot tell systemd the relay is ready", "err", err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			sdNotify("RELOADING=1")
			if err := reloadConfig(c.configPath, srv, deps, &clients, ing, log); err != nil {
				log.Error("configuration not reloaded; still running with the previous one", "err", err)
			}
			sdNotify("READY=1")
		case <-ctx.Done():
			sdNotify("STOPPING=1")
			log.Info("shutting down: finishing sessions and deliveries in flight", "grace", shutdownGrace)
			ing.stop()
			srv.Shutdown(shutdownGrace)
			stopCtl()
			if err := deps.syncConsent(context.Background()); err != nil {
				log.Error("cannot copy the last consent events into the archive; the next start will", "err", err)
			}
			log.Info("stopped")
			return nil
		}
	}
}

// reloadConfig applies what can change without dropping sessions: accounts,
// and whatever the policy takes (internal domains, notice, content rules).
func reloadConfig(path string, srv *relay.Server, deps *serveDeps, clients *atomic.Pointer[submission.ClientSettings], ing *ingestRunner, log *slog.Logger) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	accounts, err := relayAccounts(cfg, ing.grants)
	if err != nil {
		return err
	}
	if err := deps.reload(cfg); err != nil {
		return err
	}
	if err := srv.SetAccounts(accounts); err != nil {
		return err
	}
	cs := clientSettings(cfg)
	clients.Store(&cs)
	if err := ing.start(cfg); err != nil {
		return err
	}
	log.Info("configuration reloaded", "accounts", len(accounts))
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
