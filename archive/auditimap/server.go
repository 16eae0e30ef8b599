// Package auditimap serves the clinical record read-only over IMAP, for an
// auditor or the practice owner in a mail client: one mailbox per client
// (both directions), one per month, and All. Nothing can be changed:
// every command that would is answered NO.
package auditimap

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/archive"
)

// Viewer is a login allowed to read the record.
type Viewer struct {
	Username     string
	PasswordHash string // bcrypt
}

// Options configure the server.
type Options struct {
	View    *archive.View
	Viewers []Viewer
	TLS     *tls.Config
	Logger  *slog.Logger
	// UIDValidity of every mailbox: UIDs are record numbers, which never
	// change, so one value serves for the archive's life.
	UIDValidity uint32
	// RefreshEvery is how often the archive is looked at for new records at
	// most (default 5s): a look reads what was appended since the last.
	RefreshEvery time.Duration
}

const delim = '/'

var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
	Text: "The clinical record is read-only: nothing can be changed, added or removed"}

// Server is the running view.
type Server struct {
	o        Options
	log      *slog.Logger
	srv      *imapserver.Server
	failures sync.Map // remote address (IPv6: /64) -> *failCount
	bcryptMu sync.Mutex

	dummyOnce sync.Once
	dummy     []byte

	mu         sync.Mutex
	refreshed  time.Time
	unreadable int // records left out of the view, as last logged
}

type failCount struct {
	mu   sync.Mutex
	n    int
	last time.Time
}

// failureMemory is how long failed logins from an address are remembered.
const failureMemory = time.Hour

// unknownUserHash is compared against when the username matches no viewer,
// so a wrong username takes as long to refuse as a wrong password and the
// timing does not tell which usernames exist. It has the viewers' bcrypt
// cost, and is made on first use (every sealpost command links this package).
func (s *Server) unknownUserHash() []byte {
	s.dummyOnce.Do(func() {
		cost := bcrypt.DefaultCost
		if len(s.o.Viewers) > 0 {
			if c, err := bcrypt.Cost([]byte(s.o.Viewers[0].PasswordHash)); err == nil {
				cost = c
			}
		}
		s.dummy, _ = bcrypt.GenerateFromPassword([]byte("no viewer has this password"), cost)
	})
	return s.dummy
}

// failuresFrom returns the failed logins from remote within failureMemory, and
// forgets addresses whose failures are older (the map stays small).
func (s *Server) failuresFrom(remote string, now time.Time) *failCount {
	v, loaded := s.failures.LoadOrStore(remote, &failCount{last: now})
	if !loaded {
		s.failures.Range(func(k, v any) bool {
			fc := v.(*failCount)
			fc.mu.Lock()
			old := now.Sub(fc.last) > failureMemory
			fc.mu.Unlock()
			if old && k != remote {
				s.failures.Delete(k)
			}
			return true
		})
	}
	fc := v.(*failCount)
	fc.mu.Lock()
	if now.Sub(fc.last) > failureMemory {
		fc.n = 0
	}
	fc.mu.Unlock()
	return fc
}

// New prepares the server; Serve runs it.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.UIDValidity == 0 {
		o.UIDValidity = 1
	}
	if o.RefreshEvery <= 0 {
		o.RefreshEvery = 5 * time.Second
	}
	s := &Server{o: o, log: o.Logger.With("component", "archive-imap")}
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			// Failed logins count by address (an IPv6 /64), not connection.
			return &session{s: s, remote: addrKey(c.NetConn().RemoteAddr())}, nil, nil
		},
		Caps:   imap.CapSet{imap.CapIMAP4rev1: {}},
		Logger: slogLogger{s.log},
	})
	return s
}

// Serve accepts connections on l, wrapped in TLS: there is no plaintext.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.noteUnreadable()
	s.mu.Unlock()
	return s.srv.Serve(newTLSListener(l, s.o.TLS))
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// refresh picks up messages recorded since the last look, at most every few seconds.
func (s *Server) refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.refreshed) < s.o.RefreshEvery {
		return
	}
	s.refreshed = time.Now()
	if err := s.o.View.Refresh(); err != nil {
		s.log.Error("cannot read new records", "err", err)
	}
	s.noteUnreadable()
}

// noteUnreadable logs records the key does not open (by sequence number):
// they are missing from the view, and the reader must know it.
func (s *Server) noteUnreadable() {
	if u := s.o.View.Unreadable(); len(u) > s.unreadable {
		s.log.Warn("records the key does not open are left out of the view; sealpost archive verify checks them, an older archive key may open them",
			"count", len(u), "records", fmt.Sprint(u[s.unreadable:]))
		s.unreadable = len(u)
	}
}

// mailboxes groups the messages: All, Months/YYYY-MM, Clients/ADDRESS.
func (s *Server) mailboxes() map[string][]*archive.ViewMessage {
	s.refresh()
	out := map[string][]*archive.ViewMessage{"All": nil}
	for _, m := range s.o.View.Messages() {
		out["All"] = append(out["All"], m)
		month := "Months/" + m.Time.UTC().Format("2006-01")
		out[month] = append(out[month], m)
		for _, c := range m.Clients {
			out["Clients/"+c] = append(out["Clients/"+c], m)
		}
	}
	return out
}

// slogLogger takes the IMAP library's log lines without their arguments:
// those can quote what a reader sent (a search for a client's name) or a
// panic's values, and client names stay out of logs. The kind of failure
// is still there ("failed to read command", "panic handling command").
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, args ...any) {
	l.l.Warn("imap server", "detail", strings.TrimSpace(strings.ReplaceAll(format, "%v", "")))
}

// session is one connection.
type session struct {
	s      *Server
	remote string
	user   string

	name string
	msgs []*archive.ViewMessage
}

func (ss *session) Close() error { return nil }

func (ss *session) Login(username, password string) error {
	fc := ss.s.failuresFrom(ss.remote, time.Now())
	// The attempt counts as failed until it succeeds: attempts in parallel
	// connections each see those before them.
	fc.mu.Lock()
	n := fc.n
	fc.n++
	fc.last = time.Now()
	fc.mu.Unlock()
	if n >= 5 {
		// Slower answers after a handful of failures from one address.
		time.Sleep(min(time.Duration(n-4)*time.Second, 10*time.Second))
	}
	// One password check at a time: bcrypt is what an attacker would make
	// the server spend.
	ss.s.bcryptMu.Lock()
	defer ss.s.bcryptMu.Unlock()
	hash, known := ss.s.unknownUserHash(), false
	for _, vw := range ss.s.o.Viewers {
		if vw.Username == username {
			hash, known = []byte(vw.PasswordHash), true
			break
		}
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil && known {
		ss.user = username
		fc.mu.Lock()
		fc.n = 0
		fc.mu.Unlock()
		ss.s.log.Info("viewer logged in", "user", username)
		return nil
	}
	// An unknown username is not logged: it may be a password typed into
	// the wrong field.
	if known {
		ss.s.log.Warn("viewer login failed", "user", username, "remote", ss.remote)
	} else {
		ss.s.log.Warn("viewer login failed: no such viewer", "remote", ss.remote)
	}
	return imapserver.ErrAuthFailed
}

func (ss *session) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	msgs, ok := ss.s.mailboxes()[mailbox]
	if !ok {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	}
	ss.name, ss.msgs = mailbox, msgs
	return &imap.SelectData{
		Flags:          []imap.Flag{imap.FlagSeen},
		PermanentFlags: []imap.Flag{},
		NumMessages:    uint32(len(msgs)),
		UIDNext:        imap.UID(nextUID(msgs)),
		UIDValidity:    ss.s.o.UIDValidity,
	}, nil
}

func nextUID(msgs []*archive.ViewMessage) uint32 {
	if len(msgs) == 0 {
		return 1
	}
	return uint32(msgs[len(msgs)-1].Seq) + 1
}

func (ss *session) Create(string, *imap.CreateOptions) error         { return errReadOnly }
func (ss *session) Delete(string) error                              { return errReadOnly }
func (ss *session) Rename(string, string, *imap.RenameOptions) error { return errReadOnly }
func (ss *session) Subscribe(string) error                           { return nil }
func (ss *session) Unsubscribe(string) error                         { return errReadOnly }
func (ss *session) Copy(imap.NumSet, string) (*imap.CopyData, error) { return nil, errReadOnly }
func (ss *session) Store(*imapserver.FetchWriter, imap.NumSet, *imap.StoreFlags, *imap.StoreOptions) error {
	return errReadOnly
}

func (ss *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	io.Copy(io.Discard, r)
	return nil, errReadOnly
}

// Expunge refuses EXPUNGE and UID EXPUNGE. CLOSE calls it too, with a
// writer that has no connection (CLOSE sends no EXPUNGE responses); nothing
// here is ever marked \Deleted, so CLOSE just leaves the mailbox, as on any
// read-only mailbox (RFC 9051 6.4.1), instead of failing and leaving it
// selected.
func (ss *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if uids == nil && isClose(w) {
		return nil
	}
	return errReadOnly
}

// isClose tells CLOSE from EXPUNGE: imapserver (v2.0.0-beta.8) gives CLOSE
// a zero ExpungeWriter (no connection to write to) and EXPUNGE one bound to
// the connection; there is no other way to tell them apart.
func isClose(w *imapserver.ExpungeWriter) bool {
	return w == nil || *w == (imapserver.ExpungeWriter{})
}

func (ss *session) Unselect() error {
	ss.name, ss.msgs = "", nil
	return nil
}

// Poll tells the client about messages recorded since it selected the
// mailbox (EXISTS). The record is append-only and a mailbox lists its
// messages in chain order, so the old list is always a prefix of the new:
// there is never an EXPUNGE to send.
func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if ss.name == "" {
		return nil
	}
	msgs := ss.s.mailboxes()[ss.name]
	if len(msgs) <= len(ss.msgs) {
		return nil
	}
	ss.msgs = msgs
	return w.WriteNumMessages(uint32(len(msgs)))
}

// Idle announces new records while the client waits (imapserver
// advertises IDLE, and Thunderbird idles in the open folder).
func (ss *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	tick := time.NewTicker(max(ss.s.o.RefreshEvery, 100*time.Millisecond)) // no busy loop
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-tick.C:
			if err := ss.Poll(w, true); err != nil {
				return err
			}
		}
	}
}

func (ss *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	boxes := ss.s.mailboxes()
	names := make([]string, 0, len(boxes)+2)
	for n := range boxes {
		names = append(names, n)
	}
	names = append(names, "Clients", "Months")
	sort.Strings(names)
	for _, n := range names {
		match := false
		for _, p := range patterns {
			if imapserver.MatchList(n, delim, ref, p) {
				match = true
			}
		}
		if !match {
			continue
		}
		data := &imap.ListData{Mailbox: n, Delim: delim}
		if n == "Clients" || n == "Months" {
			data.Attrs = []imap.MailboxAttr{imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren}
		} else {
			data.Attrs = []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}
		}
		if options != nil && options.ReturnStatus != nil && boxes[n] != nil {
			data.Status = ss.status(n, boxes[n], options.ReturnStatus)
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func (ss *session) status(name string, msgs []*archive.ViewMessage, o *imap.StatusOptions) *imap.StatusData {
	n := uint32(len(msgs))
	d := &imap.StatusData{Mailbox: name}
	if o.NumMessages {
		d.NumMessages = &n
	}
	if o.UIDNext {
		d.UIDNext = imap.UID(nextUID(msgs))
	}
	if o.UIDValidity {
		d.UIDValidity = ss.s.o.UIDValidity
	}
	if o.NumUnseen {
		zero := uint32(0)
		d.NumUnseen = &zero
	}
	if o.Size {
		var size int64
		for _, m := range msgs {
			size += m.Size
		}
		d.Size = &size
	}
	return d
}

func (ss *session) Status(mailbox string, options *imap.StatusOptions) (*imap.StatusData, error) {
	msgs, ok := ss.s.mailboxes()[mailbox]
	if !ok {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}
	}
	return ss.status(mailbox, msgs, options), nil
}

// each calls f for the selected messages in numSet, in mailbox order.
func (ss *session) each(numSet imap.NumSet, f func(seq uint32, m *archive.ViewMessage) error) error {
	max := uint32(len(ss.msgs))
	maxUID := nextUID(ss.msgs) - 1
	for i, m := range ss.msgs {
		seq := uint32(i) + 1
		var in bool
		switch set := numSet.(type) {
		case imap.SeqSet:
			in = containsNum(set, seq, max)
		case imap.UIDSet:
			in = containsNum(uidRanges(set), uint32(m.Seq), maxUID)
		}
		if in {
			if err := f(seq, m); err != nil {
				return err
			}
		}
	}
	return nil
}

func uidRanges(set imap.UIDSet) imap.SeqSet {
	out := make(imap.SeqSet, len(set))
	for i, r := range set {
		out[i] = imap.SeqRange{Start: uint32(r.Start), Stop: uint32(r.Stop)}
	}
	return out
}

// containsNum resolves "*" (0) to max, as RFC 9051 has it.
func containsNum(set imap.SeqSet, n, max uint32) bool {
	for _, r := range set {
		start, stop := r.Start, r.Stop
		if start == 0 {
			start = max
		}
		if stop == 0 {
			stop = max
		}
		if start > stop {
			start, stop = stop, start
		}
		if n >= start && n <= stop {
			return true
		}
	}
	return false
}

func (ss *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if ss.name == "" {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "No mailbox selected"}
	}
	return ss.each(numSet, func(seq uint32, m *archive.ViewMessage) error {
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(m.Seq))
		if options.Flags {
			rw.WriteFlags([]imap.Flag{imap.FlagSeen})
		}
		if options.InternalDate {
			rw.WriteInternalDate(m.Time)
		}
		if options.RFC822Size {
			rw.WriteRFC822Size(m.Size)
		}
		needBody := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
			len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
		if needBody {
			buf, err := ss.s.o.View.Body(m)
			if err != nil {
				rw.Close()
				return err
			}
			if options.Envelope {
				if h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(buf))); err == nil {
					rw.WriteEnvelope(imapserver.ExtractEnvelope(h))
				}
			}
			if options.BodyStructure != nil {
				rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(buf)))
			}
			for _, bs := range options.BodySection {
				sec := imapserver.ExtractBodySection(bytes.NewReader(buf), bs)
				wc := rw.WriteBodySection(bs, int64(len(sec)))
				_, werr := wc.Write(sec)
				if cerr := wc.Close(); werr == nil {
					werr = cerr
				}
				if werr != nil {
					return werr
				}
			}
			for _, bs := range options.BinarySection {
				sec := imapserver.ExtractBinarySection(bytes.NewReader(buf), bs)
				wc := rw.WriteBinarySection(bs, int64(len(sec)))
				_, werr := wc.Write(sec)
				if cerr := wc.Close(); werr == nil {
					werr = cerr
				}
				if werr != nil {
					return werr
				}
			}
			for _, bss := range options.BinarySectionSize {
				rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(buf), bss))
			}
		}
		return rw.Close()
	})
}

func (ss *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	if ss.name == "" {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "No mailbox selected"}
	}
	// Each content criterion, and each branch of OR and NOT, reads the
	// messages again: a long list would keep the server busy for hours.
	if n := criteriaCount(criteria, 0); n > maxSearchCriteria {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
			Text: fmt.Sprintf("Too many search criteria (at most %d, nested %d deep)", maxSearchCriteria, maxSearchDepth)}
	}
	var data imap.SearchData
	var seqs imap.SeqSet
	var uids imap.UIDSet
	max, maxUID := uint32(len(ss.msgs)), nextUID(ss.msgs)-1
	for i, m := range ss.msgs {
		seq := uint32(i) + 1
		ok, err := ss.match(seq, m, criteria, max, maxUID)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if kind == imapserver.NumKindUID {
			uids.AddNum(imap.UID(m.Seq))
		} else {
			seqs.AddNum(seq)
		}
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	return &data, nil
}

// match applies the search criteria to one message; text criteria decrypt it.
func (ss *session) match(seq uint32, m *archive.ViewMessage, c *imap.SearchCriteria, max, maxUID uint32) (bool, error) {
	for _, set := range c.SeqNum {
		if !containsNum(set, seq, max) {
			return false, nil
		}
	}
	for _, set := range c.UID {
		if !containsNum(uidRanges(set), uint32(m.Seq), maxUID) {
			return false, nil
		}
	}
	day := time.Date(m.Time.Year(), m.Time.Month(), m.Time.Day(), 0, 0, 0, 0, time.UTC)
	if (!c.Since.IsZero() && day.Before(c.Since)) || (!c.Before.IsZero() && !day.Before(c.Before)) {
		return false, nil
	}
	for _, f := range c.Flag {
		if !strings.EqualFold(string(f), string(imap.FlagSeen)) {
			return false, nil
		}
	}
	for _, f := range c.NotFlag {
		if strings.EqualFold(string(f), string(imap.FlagSeen)) {
			return false, nil
		}
	}
	if (c.Larger != 0 && m.Size <= c.Larger) || (c.Smaller != 0 && m.Size >= c.Smaller) {
		return false, nil
	}
	if len(c.Header) > 0 || len(c.Text) > 0 || len(c.Body) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		buf, err := ss.s.o.View.Body(m)
		if err != nil {
			return false, err
		}
		entity := func() *gomessage.Entity {
			e, _ := gomessage.Read(bytes.NewReader(buf))
			if e == nil {
				e, _ = gomessage.New(gomessage.Header{}, bytes.NewReader(nil))
			}
			return e
		}
		h := mail.Header{Header: entity().Header}
		for _, hc := range c.Header {
			if !headerContains(h.FieldsByKey(hc.Key), hc.Value) {
				return false, nil
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			t, err := h.Date()
			if err != nil {
				return false, nil
			}
			d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
			if (!c.SentSince.IsZero() && d.Before(c.SentSince)) || (!c.SentBefore.IsZero() && !d.Before(c.SentBefore)) {
				return false, nil
			}
		}
		for _, t := range c.Text {
			if !entityContains(entity(), t, true) {
				return false, nil
			}
		}
		for _, t := range c.Body {
			if !entityContains(entity(), t, false) {
				return false, nil
			}
		}
	}
	for _, not := range c.Not {
		ok, err := ss.match(seq, m, &not, max, maxUID)
		if err != nil || ok {
			return false, err
		}
	}
	for _, or := range c.Or {
		a, err := ss.match(seq, m, &or[0], max, maxUID)
		if err != nil {
			return false, err
		}
		b, err := ss.match(seq, m, &or[1], max, maxUID)
		if err != nil {
			return false, err
		}
		if !a && !b {
			return false, nil
		}
	}
	return true, nil
}

func headerContains(fields gomessage.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, _ := fields.Text()
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

func entityContains(e *gomessage.Entity, pattern string, withHeader bool) bool {
	if pattern == "" {
		return true
	}
	if withHeader && headerContains(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if entityContains(part, pattern, withHeader) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, err := io.ReadAll(io.LimitReader(e.Body, 32<<20))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false
	}
	return bytes.Contains(bytes.ToLower(b), bytes.ToLower([]byte(pattern)))
}

// Limits of one SEARCH (a mail client's searches use a few criteria).
const (
	maxSearchCriteria = 32
	maxSearchDepth    = 8
)

// criteriaCount counts the criteria that read messages, with OR and NOT
// branches; past maxSearchDepth levels it answers more than the limit.
func criteriaCount(c *imap.SearchCriteria, depth int) int {
	if depth > maxSearchDepth {
		return maxSearchCriteria + 1
	}
	n := len(c.Header) + len(c.Body) + len(c.Text) + len(c.SeqNum) + len(c.UID)
	for i := range c.Not {
		n += 1 + criteriaCount(&c.Not[i], depth+1)
	}
	for i := range c.Or {
		n += 1 + criteriaCount(&c.Or[i][0], depth+1) + criteriaCount(&c.Or[i][1], depth+1)
	}
	return n
}
