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
