package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/archive/ingest"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/oauth"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"github.com/sealpost/sealpost/relay"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/pgp"
)

// ingestRunner runs one IMAP watcher per account with [account.imap] and
// replaces them all when the configuration is reloaded.
type ingestRunner struct {
	pa     *policyAndArchive
	srv    *relay.Server
	log    *slog.Logger
	redact func(string) string
	grants *oauth.Grants
	group  ingest.Group
	// mailboxes are how to log in to each account's mailbox, for delivery
	// reports (putReport).
	mailboxes atomic.Pointer[map[string]ingest.Options]
}

// start builds every account's watcher, then replaces those running.
func (r *ingestRunner) start(cfg *config.Config) error {
	var ws []*ingest.Watcher
	boxes := map[string]ingest.Options{}
	for _, a := range cfg.Accounts {
		if a.IMAP == nil {
			continue
		}
		w, o, err := r.watcher(cfg, a)
		if err != nil {
			return fmt.Errorf("account %q: imap: %w", a.Username, err)
		}
		ws = append(ws, w)
		boxes[a.Username] = o
	}
	r.group.Replace(ws)
	r.mailboxes.Store(&boxes)
	r.srv.SetReportInbox(r.putReport)
	return nil
}

// putReport puts a delivery report into the INBOX of an account whose
// mailbox sealpost reads (queue.ReportInbox).
func (r *ingestRunner) putReport(ctx context.Context, account, messageID string, report []byte) (bool, error) {
	o, ok := (*r.mailboxes.Load())[account]
	if !ok {
		return false, nil
	}
	return true, ingest.AppendReport(ctx, o, messageID, report)
}

func (r *ingestRunner) stop() { r.group.Stop() }

// watcher is the account's mailbox reader, and the options it logs in with.
func (r *ingestRunner) watcher(cfg *config.Config, a config.AccountConfig) (*ingest.Watcher, ingest.Options, error) {
	o, err := imapOptions(cfg, a, r.grants)
	if err != nil {
		return nil, o, err
	}
	login := o
	mailbox, err := r.mailbox(cfg, a)
	if err != nil {
		return nil, o, err
	}
	o.Poll = a.IMAP.Poll.D()
	o.Classify = func(ctx context.Context, from, recipients []string) (ingest.Classified, error) {
		c, err := mailbox.Classify(ctx, from, recipients)
		return ingest.Classified{Sender: c.From, Clients: c.Clients, Inbound: c.FromClient}, err
	}
	o.OnClientMessage = func(ctx context.Context, cm ingest.ClientMessage) { mailbox.ClientWrote(ctx, cm.Header, cm.From) }
	o.Archive, o.Logger = r.pa.arch, r.log
	w, err := ingest.New(o)
	return w, login, err
}

// mailbox is the policy for the account's mailbox; its acknowledgements
// are sent through the relay.
func (r *ingestRunner) mailbox(cfg *config.Config, a config.AccountConfig) (*rules.Mailbox, error) {
	var own []string
	for _, acct := range cfg.Accounts {
		own = append(own, acct.Addresses...)
	}
	mc := rules.MailboxConfig{Account: a.Username, Policy: r.pa.policy, PracticeAddresses: own,
		Keys: autocryptKeyring{r.pa.keys}, Acknowledgements: r.pa.registry, Autocrypt: rules.AutocryptMode(cfg.PGP.Autocrypt),
		Send: r.srv.Submit, Logger: r.log.With("account", a.Username), Redact: r.redact, Now: clockNow}
	if ar := a.Autoreply; ar != nil {
		mc.Autoreply = &rules.Autoreply{Every: ar.Every.D(), From: ar.From, Subject: ar.Subject, Text: ar.Text,
			Crisis: cmp.Or(ar.Crisis, cfg.Sealed.Crisis), Language: ar.Language}
	}
	return rules.NewMailbox(mc)
}

// autocryptKeyring is the keyring as rules.ClientKeys.
type autocryptKeyring struct{ *pgp.Keyring }

func (k autocryptKeyring) TakeOffered(ctx context.Context, h textproto.Header, from string, use bool) ([]rules.OfferedKey, error) {
	key, ok := pgp.AutocryptKey(h, from)
	if !ok {
		return nil, nil
	}
	take := k.Propose
	if use {
		take = k.Import
	}
	infos, err := take(ctx, bytes.NewReader(key), "autocrypt")
	var out []rules.OfferedKey
	for _, i := range infos {
		out = append(out, rules.OfferedKey{Fingerprint: i.Fingerprint, Status: i.Status, Proposed: i.Status == pgp.KeyProposed})
	}
	return out, err
}

// imapOptions is how to reach and log in to the account's mailbox.
func imapOptions(cfg *config.Config, a config.AccountConfig, grants *oauth.Grants) (ingest.Options, error) {
	m := a.IMAP
	o := ingest.Options{Account: a.Username, Address: m.Address, Implicit: m.TLS == "implicit", Username: m.Username, Folders: m.Folders}
	if m.PasswordFile == "" { // the account's OAuth 2.0 grant (LoadConfig saw to that)
		g, err := oauthGrant(cfg, grants, a.Username)
		if err != nil {
			return o, err
		}
		o.Auth = g.SASL(m.Username)
	} else {
		pw, err := config.ReadSecret(m.PasswordFile)
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
