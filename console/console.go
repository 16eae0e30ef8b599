package console

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/internal/loginthrottle"
)

// Options are what the console is wired to. Status, Refusals and Queue are
// required; Recorder may be nil (the fix forms are then not offered).
type Options struct {
	Listen string
	// TLS serves the console; cmd passes the submission certificate's
	// settings, which read a renewed certificate by themselves.
	TLS             *tls.Config
	Logins          []Login
	TrustedNetworks []netip.Prefix // spared from the per-login ceiling, as for SMTP AUTH
	Status          StatusSource
	Refusals        RefusalSource
	Recorder        Recorder
	Queue           QueueAdmin
	Clients         ClientDirectory // nil: no Clients page
	Keys            KeyAdmin        // nil: no Keys page
	Archive         ArchiveSource   // nil: no Archive page
	Activity        ActivityLog     // nil: changes are only logged
	Absences        AbsenceBook     // nil: no Absences page
	// LoginCodes keeps logins' TOTP secrets (the registry's store); nil:
	// no login codes.
	LoginCodes           LoginCodes
	RequireTOTPForAdmins bool // an admin must set codes up before anything else
	Logger               *slog.Logger
	Now                  func() time.Time // default time.Now
	// LoginDelay waits before a failed login is answered (the throttle's
	// growing delay); tests make it return at once.
	LoginDelay func(context.Context, time.Duration)
}

// Server is the console.
type Server struct {
	o        Options
	log      *slog.Logger
	logins   atomic.Pointer[loginTable]
	sessions *sessions
	throttle *loginthrottle.Throttle
	totp     LoginCodes // nil: no login codes
	// requireTOTP is Options.RequireTOTPForAdmins, changed at a reload.
	requireTOTP atomic.Bool
	pages       *pages
	handler     http.Handler
	http        *http.Server
}

// New checks the options and builds the console's handler.
func New(o Options) (*Server, error) {
	if o.Status == nil || o.Refusals == nil || o.Queue == nil || o.Logger == nil {
		return nil, errors.New("console: incomplete options")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LoginDelay == nil {
		o.LoginDelay = func(ctx context.Context, d time.Duration) {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	s := &Server{o: o, log: o.Logger, sessions: newSessions(), throttle: loginthrottle.New(o.TrustedNetworks), pages: p}
	s.totp = o.LoginCodes
	if s.totp == nil && o.RequireTOTPForAdmins {
		return nil, errors.New("console: codes required for admins, but nowhere to keep them")
	}
	s.requireTOTP.Store(o.RequireTOTPForAdmins)
	if err := s.SetLogins(o.Logins); err != nil {
		return nil, err
	}
	s.handler = s.routes()
	return s, nil
}

// SetRequireTOTPForAdmins changes whether admins must use login codes; an
// admin without them is sent to the set-up at their next login.
func (s *Server) SetRequireTOTPForAdmins(on bool) { s.requireTOTP.Store(on && s.totp != nil) }

// Handler is the console's HTTP handler (tests serve it themselves).
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on Options.Listen with TLS and serves until Shutdown.
func (s *Server) Start() (net.Addr, error) {
	if s.o.TLS == nil {
		return nil, errors.New("console: no TLS settings")
	}
	ln, err := net.Listen("tcp", s.o.Listen)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	conf := s.o.TLS.Clone()
	conf.NextProtos = []string{"h2", "http/1.1"}
	s.http = &http.Server{Handler: s.handler, TLSConfig: conf, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 2 * time.Minute, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	go func() {
		if err := s.http.Serve(tls.NewListener(ln, conf)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("console stopped", "err", err)
		}
	}()
	return ln.Addr(), nil
}

// Shutdown stops the listener and waits for requests in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.http == nil {
		return nil
	}
	return s.http.Shutdown(ctx)
}
