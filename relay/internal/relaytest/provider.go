package relaytest

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/testutil"
)

// Provider is an in-process submission server standing in for the
// practice's mail provider: TLS, AUTH, and scripted replies. Set the
// scripts under Mu.
type Provider struct {
	t    testing.TB
	Addr string

	Mu       sync.Mutex
	received []ProviderMessage
	MailErr  func(from string) error
	RcptErr  func(rcpt string) error // per-recipient reply
	DataErr  func() error
	Logins   int
	Conns    []*smtp.Conn // every connection, in order
	Reads    []string     // what each read from a connection returned (TLS mode "none")
	user     string
	pass     string
}

// ProviderMessage is a message the provider took.
type ProviderMessage struct {
	From string
	To   []string
	Data string
}

// StartProvider listens on loopback. tlsMode is "starttls", "implicit" or
// "none" (as provider.TLSMode); with a user, MAIL needs a login, and
// credentials sent without TLS fail the test.
func StartProvider(t testing.TB, pki *testutil.PKI, tlsMode, user, pass string) *Provider {
	t.Helper()
	p := &Provider{t: t, user: user, pass: pass}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		p.Mu.Lock()
		p.Conns = append(p.Conns, c)
		p.Mu.Unlock()
		return &providerSession{p: p, c: c}, nil
	}))
	srv.Domain = "provider.test"
	srv.ErrorLog = quietLog{}
	if tlsMode != "none" {
		srv.TLSConfig = pki.ServerTLS
	}
	var l net.Listener
	var err error
	if tlsMode == "implicit" {
		l, err = tls.Listen("tcp", "127.0.0.1:0", pki.ServerTLS)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	p.Addr = l.Addr().String()
	if tlsMode == "none" {
		l = readsListener{l, p}
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p
}

// Messages returns what the provider took so far.
func (p *Provider) Messages() []ProviderMessage {
	p.Mu.Lock()
	defer p.Mu.Unlock()
	return append([]ProviderMessage(nil), p.received...)
}

type quietLog struct{}

func (quietLog) Printf(string, ...interface{}) {}
func (quietLog) Println(...interface{})        {}

// readsListener records what each read from a connection without TLS
// returns: commands written together arrive together on loopback.
type readsListener struct {
	net.Listener
	p *Provider
}

func (l readsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return readsConn{c, l.p}, nil
}

type readsConn struct {
	net.Conn
	p *Provider
}

func (c readsConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.p.Mu.Lock()
	c.p.Reads = append(c.p.Reads, string(b[:n]))
	c.p.Mu.Unlock()
	return n, err
}

type providerSession struct {
	p    *Provider
	c    *smtp.Conn
	auth bool
	from string
	to   []string
}

func (s *providerSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *providerSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if _, ok := s.c.TLSConnectionState(); !ok {
			s.p.t.Errorf("credentials sent to the provider without TLS")
		}
		if username != s.p.user || password != s.p.pass {
			return smtp.ErrAuthFailed
		}
		s.p.Mu.Lock()
		s.p.Logins++
		s.p.Mu.Unlock()
		s.auth = true
		return nil
	}), nil
}
func (s *providerSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.p.user != "" && !s.auth {
		return smtp.ErrAuthRequired
	}
	s.p.Mu.Lock()
	f := s.p.MailErr
	s.p.Mu.Unlock()
	if f != nil {
		if err := f(from); err != nil {
			return err
		}
	}
	s.from = from
	return nil
}
func (s *providerSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.p.Mu.Lock()
	f := s.p.RcptErr
	s.p.Mu.Unlock()
	if f != nil {
		if err := f(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}
func (s *providerSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.p.Mu.Lock()
	f := s.p.DataErr
	s.p.Mu.Unlock()
	if f != nil {
		if err := f(); err != nil {
			return err
		}
	}
	s.p.Mu.Lock()
	s.p.received = append(s.p.received, ProviderMessage{From: s.from, To: s.to, Data: string(b)})
	s.p.Mu.Unlock()
	return nil
}
func (s *providerSession) Reset()        { s.from, s.to = "", nil }
func (s *providerSession) Logout() error { return nil }
