package main

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/oauth"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"github.com/sealpost/sealpost/relay"
)

// What the relay is given, made from the configuration.

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

// serverTLS is the submission certificate's TLS settings: the configured
// certificate, or a local CA and a certificate signed by it, made below
// data_dir on first start and renewed when due at every start.
func serverTLS(cfg *config.Config, log *slog.Logger) (*tls.Config, error) {
	certFile, keyFile := cfg.SMTP.TLSCert, cfg.SMTP.TLSKey
	if certFile == "" {
		if _, err := renewLocal(cfg, cfg.TLSDir(), log); err != nil {
			return nil, err
		}
		certFile, keyFile = filepath.Join(cfg.TLSDir(), tlsconf.CertFile), filepath.Join(cfg.TLSDir(), tlsconf.KeyFile)
		log.Info("using a self-made certificate; import its CA into mail clients", "ca", filepath.Join(cfg.TLSDir(), tlsconf.CAFile))
	}
	return tlsconf.ServerTLS(certFile, keyFile)
}

// newRelay is the relay as the configuration describes it, wired to the
// policy and the archive.
func newRelay(cfg *config.Config, pa *policyAndArchive, grants *oauth.Grants, tlsConf *tls.Config, metrics *relay.Metrics,
	redact func(string) string, log *slog.Logger) (*relay.Server, error) {
	accounts, err := relayAccounts(cfg, grants)
	if err != nil {
		return nil, err
	}
	up, err := upstreamConfig(cfg)
	if err != nil {
		return nil, err
	}
	return relay.New(relay.Config{
		Listening: relay.Listening{
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
		},
		Accounts:  accounts,
		SpoolDir:  cfg.SpoolDir(),
		OutboxDir: cfg.OutboxDir(),
		Upstream:  up,
		Queue: relay.QueueOptions{
			Workers: cfg.Upstream.Workers, Lifetime: cfg.Upstream.Lifetime.D(), DelayWarning: cfg.Upstream.DelayWarning.D(),
			RetryMin: cfg.Upstream.RetryMin.D(), RetryMax: cfg.Upstream.RetryMax.D(),
		},
		Rules:        pa.policy,
		ConsentCheck: pa.policy.RecheckConsent,
		SealedCheck:  pa.policy.RecheckSealed,
		Archive:      pa.arch,
		Metrics:      metrics,
		Logger:       log,
		Redact:       redact,
		Now:          clockNow,

		AllowPartialSends: cfg.Policy.AllowPartialSends(), // SIGHUP changes it (service.reload)
	})
}
