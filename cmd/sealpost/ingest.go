package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/sealpost/sealpost/archive/ingest"
	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"github.com/sealpost/sealpost/relay"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/pgp"
)

// ingestRunner runs one IMAP watcher per account with [account.imap] and
// restarts them all when the configuration is reloaded.
type ingestRunner struct {
	deps   *serveDeps
	srv    *relay.Server
	log    *slog.Logger
	redact func(string) string

	mu       sync.Mutex
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	watchers map[string]*ingest.Watcher // by account, for tests and logs
}

func (r *ingestRunner) start(cfg *Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ws []*ingest.Watcher
	byName := map[string]*ingest.Watcher{}
	for _, a := range cfg.Accounts {
		if a.IMAP == nil {
			continue
		}
		w, err := r.watcher(cfg, a)
		if err != nil {
			return fmt.Errorf("account %q: imap: %w", a.Username, err)
		}
		ws = append(ws, w)
		byName[a.Username] = w
	}
	r.stopLocked()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.watchers = cancel, byName
	for _, w := range ws {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			w.Run(ctx)
		}()
	}
	return nil
}

func (r *ingestRunner) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

func (r *ingestRunner) stopLocked() {
	if r.cancel != nil {
		r.cancel()
		r.wg.Wait()
		r.cancel = nil
	}
}

func (r *ingestRunner) watcher(cfg *Config, a AccountConfig) (*ingest.Watcher, error) {
	o, err := imapOptions(cfg, a, r.log)
	if err != nil {
		return nil, err
	}
	isPractice := practiceAddresses(cfg)
	log := r.log.With("account", a.Username)
	o.Poll = a.IMAP.Poll.D()
	o.IsClient, o.IsPractice = r.isClient, isPractice
	o.OnClientMessage = func(ctx context.Context, cm ingest.ClientMessage) {
		r.offeredKey(ctx, cfg.PGP.Autocrypt, cm, log)
		if a.Autoreply != nil {
			r.acknowledge(ctx, a, cm, isPractice, log)
		}
	}
	o.Archive, o.Logger = r.deps.arch, r.log
	return ingest.New(o)
}

// imapOptions is how to reach and log in to the account's mailbox.
func imapOptions(cfg *Config, a AccountConfig, log *slog.Logger) (ingest.Options, error) {
	m := a.IMAP
	o := ingest.Options{Account: a.Username, Address: m.Address, Implicit: m.TLS == "implicit", Username: m.Username, Folders: m.Folders}
	if m.PasswordFile == "" { // the account's OAuth 2.0 grant (LoadConfig saw to that)
		g, err := grantFor(cfg, a.Username, log)
		if err != nil {
			return o, err
		}
		o.Auth = g.sasl(m.Username)
	} else {
		pw, err := readSecret(m.PasswordFile)
		if err != nil {
			return o, fmt.Errorf("password_file: %w", err)
		}
		o.Password = pw
	}
	host, _, _ := net.SplitHostPort(m.Address)
	tc, err := tlsconf.ClientTLS(host, m.CAFile)
	if err != nil {
		return o, err
	}
	o.TLSConfig = tc
	return o, nil
}

// isClient: a client is anyone the consent registry has a record of, or
// whom an accepted key belongs to.
func (r *ingestRunner) isClient(ctx context.Context, address string) (bool, error) {
	st, err := r.deps.registry.Current(ctx, address, time.Now())
	if err != nil {
		return false, err
	}
	if st.State != rules.ConsentNone {
		return true, nil
	}
	return r.deps.keys.Has(ctx, address)
}

// practiceAddresses says whether an address is the practice's own: an
// account's, or at one of the internal domains.
func practiceAddresses(cfg *Config) func(string) bool {
	own := map[string]bool{}
	for _, a := range cfg.Accounts {
		for _, s := range a.Addresses {
			if n, err := addr.Normalize(s); err == nil {
				own[n] = true
			}
		}
	}
	domains := map[string]bool{}
	for _, d := range cfg.Policy.InternalDomains {
		domains[strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	return func(a string) bool {
		n, err := addr.Normalize(a)
		if err != nil {
			return false
		}
		return own[n] || domains[n[strings.LastIndexByte(n, '@')+1:]]
	}
}

// offeredKey takes the key in a client's Autocrypt header into the keyring:
// used at once ("use"), or kept until an admin accepts it ("propose").
func (r *ingestRunner) offeredKey(ctx context.Context, mode string, cm ingest.ClientMessage, log *slog.Logger) {
	if mode == "ignore" {
		return
	}
	key, ok := pgp.AutocryptKey(cm.Header, cm.From)
	if !ok {
		return
	}
	var infos []pgp.KeyInfo
	var err error
	if mode == "use" {
		infos, err = r.deps.keys.Import(ctx, bytes.NewReader(key), "autocrypt")
	} else {
		infos, err = r.deps.keys.Propose(ctx, bytes.NewReader(key), "autocrypt")
	}
	if err != nil {
		log.Warn("a client's Autocrypt key could not be taken", "client", r.redact(cm.From), "err", err)
		return
	}
	for _, k := range infos {
		if k.Status == pgp.KeyProposed {
			log.Info("a client offered a key in an Autocrypt header; it is used after: sealpost keys accept FINGERPRINT",
				"client", r.redact(cm.From), "fingerprint", k.Fingerprint)
		} else {
			log.Info("a client's Autocrypt key is in the keyring", "client", r.redact(cm.From), "fingerprint", k.Fingerprint, "status", k.Status)
		}
	}
}

// acknowledge sends the account's automatic reply to a client, at most once
// per period, through the relay (notice, encryption or consent, archive).
func (r *ingestRunner) acknowledge(ctx context.Context, a AccountConfig, cm ingest.ClientMessage, isPractice func(string) bool, log *slog.Logger) {
	reply := a.Autoreply
	if ok, why := rules.MayAcknowledge(cm.Header, cm.From, isPractice); !ok {
		log.Debug("no acknowledgement", "client", r.redact(cm.From), "because", why)
		return
	}
	now := time.Now()
	last, err := r.deps.registry.LastAcknowledgement(ctx, a.Username, cm.From)
	if err != nil {
		log.Error("no acknowledgement: the registry cannot be read", "err", err)
		return
	}
	if !last.IsZero() && now.Sub(last) < reply.Every.D() {
		log.Debug("no acknowledgement: one was sent recently", "client", r.redact(cm.From))
		return
	}
	var msg bytes.Buffer
	rules.WriteAcknowledgement(&msg, rules.Acknowledgement{From: reply.From, To: cm.From, Subject: reply.Subject,
		Text: reply.Text, InReplyTo: cm.Header.Get("Message-Id"), Date: now})
	id, err := r.srv.Submit(ctx, a.Username, reply.From, []string{cm.From}, &msg)
	if err != nil {
		var refusal *rules.Refusal
		if errors.As(err, &refusal) {
			// The reason names the client's address: it is in the archive's
			// refusal record, not in the log.
			log.Warn("no acknowledgement: the rules refuse mail to this client (no key, no consent)", "client", r.redact(cm.From))
			return
		}
		log.Error("acknowledgement not sent", "client", r.redact(cm.From), "err", err)
		return
	}
	if err := r.deps.registry.RecordAcknowledgement(ctx, a.Username, cm.From, now); err != nil {
		log.Error("acknowledgement sent but not noted; the client may get another", "err", err)
	}
	log.Info("acknowledgement queued", "client", r.redact(cm.From), "id", id)
}
