package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/mail"
	"path/filepath"
	"sync"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/console"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/status"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/sealed"
)

// consoleLogins are who may log in to the console: [[console.admin]] as
// admins, [[account]] as therapists, [[archive.viewer]] as auditors.
func consoleLogins(cfg *config.Config) []console.Login {
	var out []console.Login
	for _, a := range cfg.Console.Admins {
		out = append(out, console.Login{Username: a.Username, PasswordHash: a.PasswordHash, Role: console.Admin})
	}
	for _, a := range cfg.Accounts {
		out = append(out, console.Login{Username: a.Username, PasswordHash: a.PasswordHash, Role: console.Therapist})
	}
	for _, v := range cfg.Archive.Viewers {
		out = append(out, console.Login{Username: v.Username, PasswordHash: v.PasswordHash, Role: console.Auditor})
	}
	return out
}

// startConsole serves the practice console when [console] listen is set,
// with the submission certificate (tlsConf reads a renewed one by itself).
func (s *service) startConsole(cfg *config.Config, tlsConf *tls.Config) error {
	if cfg.Console.Listen == "" {
		return nil
	}
	if err := s.pa.registry.EnsureLoginCodes(context.Background()); err != nil {
		// The relay's PostgreSQL role may not create tables.
		s.log.Error("the console's login codes have no table in the registry's store: every console login is refused until they do",
			"err", err)
	}
	if err := moveTOTPFile(cfg, s.pa, s.log); err != nil {
		// Mail goes on; the console waits rather than let a login whose
		// codes are still in the file in with its password alone.
		s.log.Error("the practice console is off: the login codes in the older file could not be moved into the registry's store; it tries again at the next start",
			"file", filepath.Join(cfg.DataDir, totpFile), "err", err)
		return nil
	}
	srv, err := newConsole(cfg, tlsConf, s.pa, s.relayState, consoleQueue{s.srv}, s.log)
	if err != nil {
		return err
	}
	addr, err := srv.Start()
	if err != nil {
		return err
	}
	s.console = srv
	s.log.Info("the practice console is listening", "url", "https://"+addr.String()+"/")
	return nil
}

// newConsole wires the console to the registry, the keyring, the archive,
// the relay's state and its queue.
func newConsole(cfg *config.Config, tlsConf *tls.Config, pa *policyAndArchive, relay func() relayState, queue console.QueueAdmin,
	log *slog.Logger) (*console.Server, error) {
	head := func() uint64 { n, _ := pa.arch.ChainHead(); return n }
	refusals := &refusalFinder{dir: cfg.ArchiveDir(), head: head, known: pa.knownAddresses}
	counter := &dayCounter{dir: cfg.ArchiveDir(), head: head}
	return console.New(console.Options{
		Listen:               cfg.Console.Listen,
		TLS:                  tlsConf,
		Logins:               consoleLogins(cfg),
		TrustedNetworks:      cfg.SMTP.TrustedPrefixes(),
		Status:               &consoleStatus{relay: relay, cfg: cfg, counter: counter},
		Refusals:             refusals,
		Recorder:             &consoleRecorder{pa: pa},
		Queue:                queue,
		Clients:              &consoleClients{pa: pa},
		Keys:                 &consoleKeys{pa: pa},
		Archive:              consoleArchive{pa.arch, cfg.Archive.Retention.D(), counter},
		Activity:             consoleActivity{pa.arch},
		Absences:             consoleAbsences{pa},
		LoginCodes:           consoleLoginCodes{pa.registry},
		RequireTOTPForAdmins: cfg.Console.RequireTOTPForAdmins,
		Logger:               log.With("component", "console"),
	})
}

// totpFile is where the console kept its login codes' secrets before they
// moved into the registry's store.
const totpFile = "console-totp.json"

// moveTOTPFile moves the secrets of an older console-totp.json into the
// registry's store and removes the file; when that fails the file stays.
func moveTOTPFile(cfg *config.Config, pa *policyAndArchive, log *slog.Logger) error {
	path := filepath.Join(cfg.DataDir, totpFile)
	n, err := console.MoveTOTPFile(context.Background(), path, consoleLoginCodes{pa.registry})
	if err != nil {
		return err
	}
	if n > 0 {
		log.Info("the console's login codes moved into the registry's store", "logins", n, "removed", path)
	}
	return nil
}

// consoleLoginCodes are the console's login codes in the registry's store.
type consoleLoginCodes struct{ reg *rules.Registry }

func (c consoleLoginCodes) LoginCode(ctx context.Context, user string) (console.LoginCode, bool, error) {
	e, ok, err := c.reg.LoginCode(ctx, user)
	return console.LoginCode(e), ok, err
}

func (c consoleLoginCodes) SetLoginCode(ctx context.Context, user string, e console.LoginCode) error {
	return c.reg.SetLoginCode(ctx, user, rules.LoginCode(e))
}

func (c consoleLoginCodes) UseLoginCodeStep(ctx context.Context, user string, step int64) (bool, error) {
	return c.reg.UseLoginCodeStep(ctx, user, step)
}

func (c consoleLoginCodes) RemoveLoginCode(ctx context.Context, user string) error {
	_, err := c.reg.RemoveLoginCode(ctx, user)
	return err
}

// consoleStatus is `sealpost status` for the console, from the running relay.
type consoleStatus struct {
	relay   func() relayState
	cfg     *config.Config
	counter *dayCounter
}

func (c *consoleStatus) Status(ctx context.Context) *status.Report {
	now := time.Now()
	rs := c.relay()
	st := &statusReport{Build: currentBuild(), Config: c.cfg.Path, Relay: &rs, Queue: rs.Queue, Verified: rs.Verified,
		Provider: c.cfg.Upstream.Address, Warnings: []string{}}
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	if counts, err := c.counter.countSince(ctx, midnight); err == nil {
		st.RefusalsToday = &counts.Refused
	}
	completeStatus(st, c.cfg, now)
	return st
}

// refusalFinder reads refusals from the archive's clear headers. Reading
// them scans the segments, so the list is kept until the chain grows.
type refusalFinder struct {
	dir   string
	head  func() uint64
	known func(context.Context) ([]string, error) // addresses the registry and keyring name

	mu      sync.Mutex
	names   map[string]string // known addresses by keyed hash
	namedAt time.Time
	since   time.Time // the earliest time asked for
	atHead  uint64
	list    []console.Refusal
	valid   bool
}

func (f *refusalFinder) Refusals(ctx context.Context, since time.Time) ([]console.Refusal, error) {
	head := f.head()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.valid || head != f.atHead || since.Before(f.since) {
		from := since
		if f.valid && f.since.Before(from) {
			from = f.since // keep the widest window asked for
		}
		found, err := archive.FindRefusals(f.dir, "", from)
		if err != nil {
			return nil, err
		}
		f.list, f.since, f.atHead, f.valid = consoleRefusals(found), from, head, true
	}
	var out []console.Refusal
	for _, r := range f.list {
		if !r.Time.Before(since) {
			out = append(out, r)
		}
	}
	return out, nil
}

// Refusal is a refusal with its recipient named when the registry or the
// keyring knows the address (a consent revoked or run out, a key no longer
// usable): the record keeps only its keyed hash, looked up among theirs.
func (f *refusalFinder) Refusal(ctx context.Context, ref string) ([]console.Refusal, error) {
	found, err := archive.FindRefusals(f.dir, ref, time.Time{})
	if err != nil {
		return nil, err
	}
	out := consoleRefusals(found)
	for i, r := range found {
		if r.Recipient && r.Code != rules.RefusalNothingOnFile && f.known != nil {
			out[i].Address = f.named(ctx)[r.AddressHash()]
		}
	}
	return out, nil
}

// namesFor is how long the addresses' hashes are kept: a consent
// recorded since shows on the page a little later, and a page does not
// hash 100,000 addresses (about 0.2 s) each time it is opened.
const namesFor = time.Minute

// named are the known addresses by their keyed hash.
func (f *refusalFinder) named(ctx context.Context) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.names != nil && time.Since(f.namedAt) < namesFor {
		return f.names
	}
	hash, err := archive.AddressHasher(f.dir)
	if err != nil {
		return nil
	}
	known, err := f.known(ctx)
	if err != nil {
		return nil
	}
	f.names = make(map[string]string, len(known))
	for _, a := range known {
		f.names[hash(a)] = a
	}
	f.namedAt = time.Now()
	return f.names
}

func consoleRefusals(found []archive.RefusalFound) []console.Refusal {
	out := make([]console.Refusal, 0, len(found))
	for _, r := range found {
		out = append(out, console.Refusal{Time: r.Time, Ref: r.Ref, Code: r.Code, Account: r.Account, Recipient: r.Recipient, Is: r.Is})
	}
	return out
}

// consoleRecorder records what an admin fixes in the console, through the
// same registry and keyring the commands use.
type consoleRecorder struct{ pa *policyAndArchive }

// RecordConsent archives the scan first, then records the consent naming
// the scan's record: a consent never claims a scan the record lacks.
func (c *consoleRecorder) RecordConsent(ctx context.Context, ev record.ConsentEvent, scan *console.Evidence) (record.ConsentEvent, error) {
	if scan != nil {
		id, err := c.pa.arch.RecordEvidence(ctx, archive.Evidence{Addresses: ev.Addresses, Client: ev.Client, Filename: scan.Filename,
			Type: scan.Type, RecordedBy: ev.RecordedBy}, scan.Data)
		if err != nil {
			return ev, fmt.Errorf("the scan could not be archived, so nothing was recorded: %w", err)
		}
		ev.Evidence += fmt.Sprintf(" (scan %s in the archive)", id)
	}
	return c.pa.registry.Add(ctx, ev)
}

func (c *consoleRecorder) ImportKey(ctx context.Context, data []byte, by string) ([]console.ImportedKey, error) {
	infos, err := c.pa.keys.Import(ctx, bytes.NewReader(data), "console, "+by)
	if err != nil {
		return nil, err
	}
	out := make([]console.ImportedKey, 0, len(infos))
	for _, k := range infos {
		out = append(out, console.ImportedKey{Fingerprint: k.Fingerprint, UserIDs: k.UserIDs, Status: k.Status})
	}
	return out, nil
}

func (c *consoleRecorder) SetPassphrase(ctx context.Context, address, client, passphrase, by string) (record.ConsentEvent, error) {
	prepared, err := sealed.CheckPassphrase(passphrase)
	if err != nil {
		return record.ConsentEvent{}, err
	}
	return c.pa.registry.SetPassphrase(ctx, []string{address}, client, prepared, by)
}

// consoleQueue is the relay's queue for the console.
type consoleQueue struct{ srv *relay.Server }

func (q consoleQueue) List() []console.QueuedMessage {
	list := q.srv.Queue()
	out := make([]console.QueuedMessage, 0, len(list))
	for _, m := range list {
		out = append(out, console.QueuedMessage{ID: m.ID, Account: m.Account, Received: m.Received, Size: m.Size, Attempts: m.Attempts,
			NextAttempt: m.NextAttempt, Pending: m.Pending, LastReply: m.LastError, Dropped: m.Dropped, HeldUntil: m.HeldUntil})
	}
	return out
}

func (q consoleQueue) Retry(id string) error {
	_, err := q.srv.Retry(id)
	return err
}

func (q consoleQueue) Drop(id string) error {
	_, err := q.srv.Drop(id)
	return err
}

// consoleClients is the consent registry for the Clients page, with what
// the policy would decide for each client now.
type consoleClients struct{ pa *policyAndArchive }

func (c *consoleClients) SearchClients(ctx context.Context, text, after string, limit int) ([]console.Client, string, error) {
	entries, next, err := c.pa.registry.SearchClients(ctx, text, after, limit, time.Now())
	if err != nil {
		return nil, "", err
	}
	out, err := c.decided(ctx, entries)
	return out, next, err
}

func (c *consoleClients) ExpiringConsents(ctx context.Context, days, limit int) ([]console.Client, bool, error) {
	entries, more, err := c.pa.registry.ExpiringConsents(ctx, days, limit, time.Now())
	if err != nil {
		return nil, false, err
	}
	out := make([]console.Client, 0, len(entries))
	for _, e := range entries {
		out = append(out, console.Client{Address: e.Address, Name: e.Client, Consent: string(e.State), Signed: e.Signed, Expires: e.Expires})
	}
	return out, more, nil
}

func (c *consoleClients) Client(ctx context.Context, address string) (console.Client, []record.ConsentEvent, bool, error) {
	hist, err := c.pa.registry.ClientHistory(ctx, address)
	if err != nil || len(hist) == 0 {
		return console.Client{}, nil, false, err
	}
	st, err := c.pa.registry.Current(ctx, address, time.Now())
	if err != nil {
		return console.Client{}, nil, false, err
	}
	clients, err := c.decided(ctx, []rules.ConsentEntry{rules.EntryOf(st)})
	if err != nil {
		return console.Client{}, nil, false, err
	}
	out := make([]record.ConsentEvent, len(hist))
	for i, ev := range hist {
		out[i] = *ev
	}
	return clients[0], out, true, nil
}

func (c *consoleClients) decided(ctx context.Context, entries []rules.ConsentEntry) ([]console.Client, error) {
	out := make([]console.Client, 0, len(entries))
	for _, e := range entries {
		d, err := c.pa.policy.Decide(ctx, "", e.Address)
		if err != nil {
			return nil, err
		}
		out = append(out, console.Client{Address: e.Address, Name: e.Client, Consent: string(e.State), Signed: e.Signed, Expires: e.Expires,
			Evidence: e.Evidence, Passphrase: e.PassphraseSet, WouldGet: string(d.Protection), Why: d.Reason})
	}
	return out, nil
}

// consoleKeys is the keyring of recipients' keys for the Keys page.
type consoleKeys struct{ pa *policyAndArchive }

func (c *consoleKeys) Keys(ctx context.Context) ([]console.Key, error) {
	infos, err := c.pa.keys.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]console.Key, 0, len(infos))
	for _, k := range infos {
		key := console.Key{Fingerprint: k.Fingerprint, UserIDs: k.UserIDs, Algorithm: k.Algorithm, Created: k.Created,
			Status: k.Status, Detail: k.Detail, Source: k.Source, Imported: k.Imported}
		if k.Expires != nil {
			key.Expires = *k.Expires
		}
		out = append(out, key)
	}
	return out, nil
}

func (c *consoleKeys) Import(ctx context.Context, data []byte, by string) ([]console.ImportedKey, error) {
	return (&consoleRecorder{pa: c.pa}).ImportKey(ctx, data, by)
}

func (c *consoleKeys) Accept(ctx context.Context, fingerprint, by string) error {
	return c.pa.keys.Accept(ctx, fingerprint)
}

func (c *consoleKeys) Remove(ctx context.Context, fingerprint, by string) error {
	return c.pa.keys.Remove(ctx, fingerprint)
}

// consoleArchive is the archive's state for the Archive page.
type consoleArchive struct {
	arch      *archive.Archive
	retention time.Duration
	counter   *dayCounter
}

func (c consoleArchive) PruneDryRun(ctx context.Context) ([]string, string, error) {
	rep, err := c.arch.Prune(ctx, c.retention, true)
	if err != nil {
		return nil, "", err
	}
	return rep.Removed, rep.Kept, nil
}

func (c consoleArchive) State(ctx context.Context) (console.ArchiveState, error) {
	seq, head := c.arch.ChainHead()
	st := console.ArchiveState{Records: seq, Head: head}
	holds, err := archive.ListHolds(c.arch.Dir())
	if err != nil {
		return st, err
	}
	for _, h := range holds {
		st.Holds = append(st.Holds, console.Hold{ID: h.ID, Since: h.Since, Until: h.Until, Clients: h.Clients, Set: h.Set})
	}
	return st, nil
}

// consoleActivity keeps the console's changes in the archive's chain.
type consoleActivity struct{ arch *archive.Archive }

func (c consoleActivity) Record(ctx context.Context, a console.Activity) error {
	return c.arch.RecordActivity(ctx, archive.Activity{Time: a.Time, Who: a.Who, Role: a.Role, What: a.What, Object: a.Object, From: a.From, Addresses: a.Addresses})
}

func (c consoleActivity) Since(ctx context.Context, since time.Time) ([]console.Activity, error) {
	found, err := archive.FindActivity(c.arch.Dir(), since)
	if err != nil {
		return nil, err
	}
	out := make([]console.Activity, 0, len(found))
	for _, f := range found {
		out = append(out, console.Activity{Time: f.Time, Who: f.Who, What: f.What, Object: f.Object, From: f.From})
	}
	return out, nil
}

func (c consoleArchive) Timeline(ctx context.Context, address string, limit int) ([]console.TimelineEntry, bool, error) {
	found, more, err := archive.ClientTimeline(ctx, c.arch.Dir(), address, time.Time{}, limit)
	if err != nil {
		return nil, false, err
	}
	out := make([]console.TimelineEntry, 0, len(found))
	for _, e := range found {
		out = append(out, console.TimelineEntry{Time: e.Time, Kind: e.Kind, Direction: e.Direction, Event: e.Event, Code: e.Code, Account: e.Account, Size: e.Size})
	}
	return out, more, nil
}

func (c consoleArchive) Summary(ctx context.Context, since time.Time) (console.Summary, error) {
	s, err := c.counter.countSince(ctx, since)
	return console.Summary{Sent: s.Sent, Received: s.Received, Delivered: s.Delivered, Bounced: s.Bounced, Refused: s.Refused, RefusedBy: s.RefusedBy}, err
}

// knownAddresses are the addresses the registry and the keyring name.
func (d *policyAndArchive) knownAddresses(ctx context.Context) ([]string, error) {
	out, err := d.registry.Addresses(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := d.keys.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		for _, uid := range k.UserIDs {
			if a, err := mail.ParseAddress(uid); err == nil {
				out = append(out, a.Address)
			}
		}
	}
	return out, nil
}

// consoleAbsences are the registry's absences for the console's Absences
// page, dated in each account's office hours' zone as the policy has them
// (so a reload's new zone counts at once).
type consoleAbsences struct{ pa *policyAndArchive }

func (c consoleAbsences) Absences(ctx context.Context, account string) ([]console.Absence, error) {
	list, err := c.pa.registry.Absences(ctx, account)
	out := make([]console.Absence, 0, len(list))
	for _, a := range list {
		out = append(out, console.Absence(a))
	}
	return out, err
}

func (c consoleAbsences) AddAbsence(ctx context.Context, a console.Absence) (console.Absence, error) {
	got, err := c.pa.registry.AddAbsence(ctx, rules.Absence(a))
	return console.Absence(got), err
}

func (c consoleAbsences) CancelAbsence(ctx context.Context, account string, id int64, by string) error {
	return c.pa.registry.CancelAbsence(ctx, account, id, by)
}

func (c consoleAbsences) Today(account string) (string, bool) {
	loc, ok := c.pa.policy.Zone(account)
	if !ok {
		loc = time.Local
	}
	return clockNow().In(loc).Format(time.DateOnly), ok
}
