// Package ingest brings clients' mail into the clinical record: it reads a
// therapist's mailbox at the provider over IMAP (read-only: EXAMINE and
// BODY.PEEK, never a flag, move or delete) and archives every message from
// or to a client, once. Its one write is AppendReport: sealpost's delivery
// reports into the account's own INBOX. Which messages those are is the policy's to say
// (Options.Classify: rules.Mailbox), and so is what follows from a client's
// message (Options.OnClientMessage); ingest decides neither.
package ingest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/ids"
)

// Archive is the clinical record as ingest uses it (implemented by
// *archive.Archive).
type Archive interface {
	IngestState(account, folder string) (uidValidity, lastUID uint32)
	RecordInbound(ctx context.Context, m archive.IngestedMessage, body io.Reader) (bool, error)
}

// ClientMessage is a client's message just recorded, for what follows from
// it (an Autocrypt key, an acknowledgement).
type ClientMessage struct {
	Account string
	Folder  string
	From    string // the client's address, normalized
	Header  textproto.Header
}

// Options configure the watcher of one account's mailbox.
type Options struct {
	Account   string
	Address   string // host:port of the provider's IMAP server
	Implicit  bool   // implicit TLS (993); false: STARTTLS (143)
	TLSConfig *tls.Config
	Username  string
	Password  string
	// Auth, when set, logs in instead of the password (AUTHENTICATE, e.g.
	// XOAUTH2): asked for a fresh client at every connection.
	Auth    func(ctx context.Context) (sasl.Client, error)
	Folders []string // default INBOX
	// Poll is how often folders are looked at without IDLE (or when several
	// are watched); IdleFor is how long one IDLE lasts before it is renewed.
	Poll, IdleFor time.Duration
	// Backoff bounds the wait before reconnecting after a failure.
	BackoffMin, BackoffMax time.Duration

	// Classify says from a message's envelope (the addresses in From, and
	// in To, Cc and Bcc, as written) whether the record keeps it. An error
	// leaves the message for later.
	Classify func(ctx context.Context, from, recipients []string) (Classified, error)
	// OnClientMessage is called after a message from a client is recorded.
	OnClientMessage func(ctx context.Context, m ClientMessage)

	Archive Archive
	Logger  *slog.Logger
	Now     func() time.Time
}

// Classified is what a message is to the record, decided from its envelope.
type Classified struct {
	Sender  string   // normalised
	Clients []string // normalised; none: the record does not keep it
	Inbound bool     // from a client; otherwise from the practice to Clients
}

// Watcher keeps one connection to one account's mailbox.
type Watcher struct {
	o   Options
	log *slog.Logger
	// scanned is how far each folder's envelopes were looked at in this
	// run: the archive's position moves only with a client's message, so
	// without it a mailbox of mostly other mail would be fetched whole at
	// every wake-up.
	scanned map[string]archive.IngestSource
}

// New checks the options and fills in defaults.
func New(o Options) (*Watcher, error) {
	if o.Archive == nil || o.Classify == nil {
		return nil, errors.New("ingest: archive and Classify are required")
	}
	if len(o.Folders) == 0 {
		o.Folders = []string{"INBOX"}
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Minute
	}
	if o.IdleFor <= 0 {
		o.IdleFor = 25 * time.Minute // servers may end an IDLE after 30 (RFC 2177)
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Watcher{o: o, log: o.Logger.With("component", "imap", "account", o.Account), scanned: map[string]archive.IngestSource{}}, nil
}

// Run reads the mailbox until ctx ends, reconnecting with growing waits.
func (w *Watcher) Run(ctx context.Context) {
	wait := w.o.BackoffMin
	for ctx.Err() == nil {
		start := time.Now()
		err := w.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > w.o.BackoffMax {
			wait = w.o.BackoffMin // it had been working: start the waits over
		}
		w.log.Warn("IMAP connection to the provider lost; reconnecting", "err", err, "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, w.o.BackoffMax)
	}
}

// CheckLogin connects as a watcher would, logs in, opens each folder
// read-only (EXAMINE) and logs out: `sealpost check` uses it. Only the
// connection and login options are used.
func CheckLogin(ctx context.Context, o Options) error {
	if len(o.Folders) == 0 {
		o.Folders = []string{"INBOX"}
	}
	c, done, err := loggedIn(ctx, o)
	if err != nil {
		return err
	}
	defer done()
	for _, f := range o.Folders {
		if _, err := c.Select(f, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			return fmt.Errorf("folder %q: %w", f, err)
		}
	}
	return c.Logout().Wait()
}

// loggedIn connects and logs in with o, for a single errand (check, a
// report); done closes the connection, which ctx's end also does.
func loggedIn(ctx context.Context, o Options) (c *imapclient.Client, done func(), err error) {
	w := &Watcher{o: o}
	if c, err = w.dial(make(chan struct{}, 1)); err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", o.Address, err)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	done = func() { stop(); c.Close() }
	if err := w.login(ctx, c); err != nil {
		done()
		return nil, nil, fmt.Errorf("login as %s: %w", o.Username, err)
	}
	return c, done, nil
}

func (w *Watcher) dial(news chan<- struct{}) (*imapclient.Client, error) {
	opts := &imapclient.Options{
		TLSConfig: w.o.TLSConfig,
		Dialer:    &net.Dialer{Timeout: 30 * time.Second},
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case news <- struct{}{}:
					default:
					}
				}
			},
		},
	}
	if w.o.Implicit {
		return imapclient.DialTLS(w.o.Address, opts)
	}
	return imapclient.DialStartTLS(w.o.Address, opts)
}

func (w *Watcher) login(ctx context.Context, c *imapclient.Client) error {
	if w.o.Auth == nil {
		return c.Login(w.o.Username, w.o.Password).Wait()
	}
	sc, err := w.o.Auth(ctx)
	if err != nil {
		return err
	}
	// A login that speaks more than one mechanism is told those offered.
	if ch, ok := sc.(interface{ ChooseMechanism(offered []string) }); ok {
		ch.ChooseMechanism(c.Caps().AuthMechanisms())
	}
	return c.Authenticate(sc)
}

// session is one connection: log in, read every folder, then wait for news
// (IDLE, or the poll interval) and read again, until something fails.
func (w *Watcher) session(ctx context.Context) error {
	news := make(chan struct{}, 1)
	c, err := w.dial(news)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", w.o.Address, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := w.login(ctx, c); err != nil {
		return fmt.Errorf("login as %s: %w", w.o.Username, err)
	}
	w.log.Info("reading the provider's mailbox", "folders", len(w.o.Folders), "idle", c.Caps().Has(imap.CapIdle))
	for {
		for _, f := range w.o.Folders {
			if err := w.scan(ctx, c, f); err != nil {
				return err
			}
		}
		w.log.Debug("mailbox read; waiting for new mail")
		if err := w.wait(ctx, c, news); err != nil {
			return err
		}
	}
}

// wait returns when the selected folder has news, or it is time to look
// again. IDLE is used when the server has it and one folder is watched (it
// tells only about the selected folder).
func (w *Watcher) wait(ctx context.Context, c *imapclient.Client, news <-chan struct{}) error {
	select {
	case <-news: // arrived while scanning
		return nil
	default:
	}
	if len(w.o.Folders) == 1 && c.Caps().Has(imap.CapIdle) {
		idle, err := c.Idle()
		if err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		t := time.NewTimer(w.o.IdleFor)
		defer t.Stop()
		select {
		case <-news:
		case <-t.C:
		case <-ctx.Done():
		case <-c.Closed():
		}
		if err := idle.Close(); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		if err := idle.Wait(); err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		return ctx.Err()
	}
	t := time.NewTimer(w.o.Poll)
	defer t.Stop()
	select {
	case <-t.C:
	case <-news:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.Closed():
		return errors.New("the server closed the connection")
	}
	return nil
}

// candidate is a message whose envelope says it is from or to a client.
type candidate struct {
	uid       imap.UID
	date      time.Time
	direction archive.Direction
	clients   []string
	from      string
}

// scan reads what is new in one folder since the archive's position there.
func (w *Watcher) scan(ctx context.Context, c *imapclient.Client, folder string) error {
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return fmt.Errorf("examine %s: %w", folder, err)
	}
	uv, last := w.o.Archive.IngestState(w.o.Account, folder)
	if uv != sel.UIDValidity {
		if uv != 0 {
			w.log.Warn("the folder's UIDVALIDITY changed: reading it again from the start (nothing is archived twice)",
				"folder", folder, "was", uv, "now", sel.UIDValidity)
		}
		last = 0
	}
	// Envelopes looked at before in this run are not fetched again (a
	// restart looks at them once more: a sender may have become a client).
	if s, ok := w.scanned[folder]; ok && s.UIDValidity == sel.UIDValidity && s.UID > last {
		last = s.UID
	}
	if sel.NumMessages == 0 || (sel.UIDNext != 0 && uint32(sel.UIDNext) <= last+1) {
		return nil
	}
	set := imap.UIDSet{imap.UIDRange{Start: imap.UID(last + 1), Stop: 0}}
	// One envelope at a time: a folder of tens of thousands (or a server
	// that never stops answering) is not held in memory.
	cmd := c.Fetch(set, &imap.FetchOptions{UID: true, Envelope: true, InternalDate: true})
	var found []candidate
	seen := last
	for md := cmd.Next(); md != nil; md = cmd.Next() {
		m, err := md.Collect()
		if err != nil {
			cmd.Close()
			return fmt.Errorf("fetch envelopes in %s: %w", folder, err)
		}
		if uint32(m.UID) <= last || m.Envelope == nil {
			continue // "n:*" answers with the last message even when it is older
		}
		cand, ok, err := w.classify(ctx, m)
		if err != nil {
			cmd.Close()
			return err
		}
		if ok {
			found = append(found, cand)
		}
		seen = max(seen, uint32(m.UID))
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("fetch envelopes in %s: %w", folder, err)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].uid < found[j].uid })
	for _, cand := range found {
		if err := w.record(ctx, c, folder, sel.UIDValidity, cand); err != nil {
			return err
		}
	}
	w.scanned[folder] = archive.IngestSource{Account: w.o.Account, Folder: folder, UIDValidity: sel.UIDValidity, UID: seen}
	return nil
}

// classify asks Options.Classify about a message's envelope.
func (w *Watcher) classify(ctx context.Context, m *imapclient.FetchMessageBuffer) (candidate, bool, error) {
	env := m.Envelope
	var from, rcpts []string
	for _, a := range env.From {
		from = append(from, a.Addr())
	}
	for _, list := range [][]imap.Address{env.To, env.Cc, env.Bcc} {
		for _, a := range list {
			rcpts = append(rcpts, a.Addr())
		}
	}
	c, err := w.o.Classify(ctx, from, rcpts)
	if err != nil || len(c.Clients) == 0 {
		return candidate{}, false, err
	}
	cand := candidate{uid: m.UID, date: m.InternalDate, direction: archive.Outbound, clients: c.Clients, from: c.Sender}
	if c.Inbound {
		cand.direction = archive.Inbound
	}
	return cand, true, nil
}

// record fetches one message (BODY.PEEK: the \Seen flag stays as it was)
// and streams it into the archive.
func (w *Watcher) record(ctx context.Context, c *imapclient.Client, folder string, uidValidity uint32, cand candidate) error {
	section := &imap.FetchItemBodySection{Peek: true}
	cmd := c.Fetch(imap.UIDSetNum(cand.uid), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
	defer cmd.Close()
	msg := cmd.Next()
	if msg == nil {
		return cmd.Close() // gone meanwhile (expunged): nothing to record
	}
	var body io.Reader
	for item := msg.Next(); item != nil; item = msg.Next() {
		if b, ok := item.(imapclient.FetchItemDataBodySection); ok {
			body = b.Literal
			break
		}
	}
	if body == nil {
		return fmt.Errorf("fetch %s UID %d: the server sent no body", folder, cand.uid)
	}
	head := &headCapture{max: 128 << 10}
	when := cand.date
	if when.IsZero() {
		when = w.o.Now()
	}
	in := archive.IngestedMessage{
		Message: archive.Message{ID: newID(when), Time: when.UTC(), Direction: cand.direction, Account: w.o.Account, Sender: cand.from, Folder: folder},
		Clients: cand.clients,
		Source:  archive.IngestSource{Account: w.o.Account, Folder: folder, UIDValidity: uidValidity, UID: uint32(cand.uid)},
	}
	recorded, err := w.o.Archive.RecordInbound(ctx, in, io.TeeReader(body, head))
	if err != nil {
		return fmt.Errorf("archive %s UID %d: %w", folder, cand.uid, err)
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("fetch %s UID %d: %w", folder, cand.uid, err)
	}
	if !recorded {
		return nil
	}
	w.log.Info("archived a client's message from the mailbox", "folder", folder, "uid", uint32(cand.uid), "direction", cand.direction, "id", in.ID)
	if cand.direction == archive.Inbound && w.o.OnClientMessage != nil {
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(head.Bytes())))
		if err == nil {
			w.o.OnClientMessage(ctx, ClientMessage{Account: w.o.Account, Folder: folder, From: cand.from, Header: h})
		}
	}
	return nil
}

// headCapture keeps the first max bytes written: the header section.
type headCapture struct {
	bytes.Buffer
	max int
}

func (h *headCapture) Write(p []byte) (int, error) {
	if room := h.max - h.Len(); room > 0 {
		h.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// newID names an ingested message in the record: "in-" keeps it apart
// from the relay's queue ids.
func newID(now time.Time) string { return "in-" + ids.New(now) }
