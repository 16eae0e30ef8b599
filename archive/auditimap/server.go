package auditimap

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

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

// summaryCacheBytes is how much of the decisions summaries made lately the
// view keeps: a client that reads them all reads a few at a time.
const summaryCacheBytes = 4 << 20

var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
	Text: "The clinical record is read-only: nothing can be changed, added or removed (only \\Seen, for this viewer while the view runs)"}

var errReadOnlySelected = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
	Text: "The mailbox was opened read-only (EXAMINE): not even \\Seen changes; the clinical record itself is read-only"}

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
	built      *mailboxSet
	started    time.Time
	// uidNext is, per mailbox, the highest UIDNEXT announced: it never goes
	// down, also when a summary whose UID was the highest is replaced.
	uidNext map[string]uint32
	flags   map[string]*viewerFlags // by viewer
	// summaries are the decisions summaries made lately
	summaries *summaryCache
	welcome   keptBytes // INBOX's one message
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
	s := &Server{o: o, log: o.Logger.With("component", "archive-imap"), started: time.Now(), uidNext: map[string]uint32{}, flags: map[string]*viewerFlags{},
		summaries: &summaryCache{max: summaryCacheBytes, byKey: map[seenKey][]byte{}}}
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

// refresh picks up messages recorded since the last look, at most every
// few seconds, without holding up other sessions' commands: they go on
// with what the view has.
func (s *Server) refresh() {
	s.mu.Lock()
	due := time.Since(s.refreshed) >= s.o.RefreshEvery
	if due {
		s.refreshed = time.Now()
	}
	s.mu.Unlock()
	if !due {
		return
	}
	if err := s.o.View.TryRefresh(); err != nil {
		s.log.Error("cannot read new records", "err", err)
	}
	s.mu.Lock()
	s.noteUnreadable()
	s.mu.Unlock()
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

// mailboxes are the view's mailboxes as of the newest records: the set
// before with what the view found since (nothing, for most commands).
func (s *Server) mailboxes() map[string]box {
	s.refresh()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.built != nil {
		s.built = s.built.apply(s.o.View)
	}
	if s.built == nil {
		s.built = newMailboxSet().apply(s.o.View)
	}
	return s.built.boxes
}

// welcomeDate is the date of INBOX's message: that of the first message
// in the record, or the server's start while the view holds none.
func (s *Server) welcomeDate() time.Time {
	all := s.mailboxes()[boxAll]
	if all.len() == 0 {
		return s.started
	}
	l, _ := s.o.View.Listing(uint64(all.uids[0]))
	return l.Time
}

// nextUID is UIDNEXT for a mailbox: past every UID it holds or held while
// the view ran.
func (s *Server) nextUID(name string, b *box) uint32 {
	n := uint32(1)
	if b.len() > 0 {
		n = b.uids[b.len()-1] + 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n = max(n, s.uidNext[name])
	s.uidNext[name] = n
	return n
}

// viewer is the flags of a viewer, made at their first login.
func (s *Server) viewer(username string) *viewerFlags {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flags[username]
	if f == nil {
		f = &viewerFlags{seen: map[seenKey]bool{}}
		s.flags[username] = f
	}
	return f
}

// slogLogger takes the IMAP library's log lines ("panic handling command:
// ...", "failed to read command: ..."): the line itself on one line, and a
// panic's stack beside it. The library quotes no more of what a client
// sent than one byte of a command it could not parse; a panic's stack is
// capped.
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	line, stack, _ := strings.Cut(text, "\n")
	attrs := []any{"detail", capText(strings.TrimSpace(line), 2000)}
	if stack = strings.TrimSpace(stack); stack != "" {
		attrs = append(attrs, "stack", capText(stack, 16<<10))
	}
	l.l.Warn("imap server", attrs...)
}

func capText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
