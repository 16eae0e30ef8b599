package relay

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// guardConn lets the relay end a session right after go-smtp has written a
// reply (too many errors, shutting down): go-smtp offers no way to close a
// connection after its reply, and closing before would lose the reply.
type guardConn struct {
	net.Conn
	closeAfterWrite atomic.Bool

	// TLS handshake bookkeeping for the failure counter: a handshake has
	// started once the client's hello arrived (Metrics.countTLS). It failed
	// when frontConn's handshake fails, or when an implicit-TLS connection
	// (tlsConn) closes with its handshake incomplete.
	metrics    *Metrics
	tlsConn    *tls.Conn
	tlsStarted atomic.Bool
	tlsFailed  atomic.Bool
	closed     atomic.Bool

	// greetingWait > 0: before the greeting, listen this long for a client
	// that talks first (RFC 5321 4.3.1: the client waits for the 220). Only
	// bots and broken clients do; they are answered 554 and cut off, as
	// Postfix's postscreen does with its pregreet test.
	greetingWait time.Duration
	greeted      atomic.Bool
	log          *slog.Logger

	release func() // gives back the connection's slots (guardListener.slots, perAddress)
}

// tooManyConnections answers a connection beyond [smtp] max_connections
// (in clear, also on the implicit-TLS port: the client never gets further).
var tooManyConnections = []byte("421 4.7.0 Too many connections to this server; try again in a few minutes\r\n")

// tooManyFromAddress answers a connection beyond [smtp]
// max_connections_per_ip: one host cannot take every slot.
var tooManyFromAddress = []byte("421 4.7.0 Too many connections from your address; close some (or wait a few minutes) and try again\r\n")

// addressSlots counts the open connections per client address
// (clientPrefix), over both listeners.
type addressSlots struct {
	max int
	mu  sync.Mutex
	n   map[netip.Prefix]int
}

func newAddressSlots(max int) *addressSlots {
	return &addressSlots{max: max, n: map[netip.Prefix]int{}}
}

// take counts a connection from a; false when a already has max. A nil
// addressSlots bounds nothing.
func (s *addressSlots) take(a net.Addr) (release func(), ok bool) {
	if s == nil {
		return func() {}, true
	}
	key := clientPrefix(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n[key] >= s.max {
		return nil, false
	}
	s.n[key]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.n[key]--; s.n[key] <= 0 {
			delete(s.n, key)
		}
	}, true
}

// clientPrefix is what the relay counts a client by, for its connections
// and its failed logins: its IPv4 address, or its IPv6 /64 (one host can
// use the whole /64, and would otherwise count as many).
func clientPrefix(a net.Addr) netip.Prefix { return prefixOf(clientIP(a)) }

// clientIP is a client's address; not valid for what is not TCP (tests'
// pipes), which all count as one.
func clientIP(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	return ta.AddrPort().Addr().Unmap()
}

func prefixOf(ip netip.Addr) netip.Prefix {
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// earlyTalker is the reply to a client that talked before the greeting.
var earlyTalker = []byte("554 5.5.1 Protocol error: the client talked before the server's greeting; wait for the 220 line (RFC 5321 4.3.1)\r\n")

// talksFirst reports whether the client sends anything within the greeting
// wait. What it sent is discarded: the session ends either way.
func (g *guardConn) talksFirst() bool {
	if err := g.Conn.SetReadDeadline(time.Now().Add(g.greetingWait)); err != nil {
		return false
	}
	var b [512]byte
	n, err := g.Conn.Read(b[:])
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		// The usual case: silence. Clear the deadline; go-smtp sets its own.
		g.Conn.SetReadDeadline(time.Time{})
		return false
	}
	return n > 0
}

func (g *guardConn) countFailure() {
	if g.tlsStarted.Load() && g.tlsFailed.CompareAndSwap(false, true) {
		g.metrics.tlsFailed.Inc()
	}
}

func (g *guardConn) Close() error {
	err := g.Conn.Close()
	if g.closed.CompareAndSwap(false, true) {
		if g.release != nil {
			g.release()
		}
		// Only after the close: ConnectionState waits for a handshake in
		// progress, which the close ends.
		if g.tlsConn != nil && !g.tlsConn.ConnectionState().HandshakeComplete {
			g.countFailure()
		}
	}
	return err
}

func (g *guardConn) Write(p []byte) (int, error) {
	if g.greeted.CompareAndSwap(false, true) {
		if g.greetingWait > 0 && g.talksFirst() {
			g.metrics.refused.WithLabelValues("connect", "early_talker").Inc()
			g.log.Info("refused a client that talked before the greeting", "remote", g.Conn.RemoteAddr().String())
			g.Conn.Write(earlyTalker)
			g.Conn.Close()
			return 0, net.ErrClosed
		}
	}
	n, err := g.Conn.Write(p)
	if g.closeAfterWrite.Load() {
		g.Conn.Close()
	}
	return n, err
}

// closeAfterReply marks a session's connection to close after the next
// reply.
func closeAfterReply(c net.Conn) {
	if f := frontOf(c); f != nil {
		f.guardConn.closeAfterWrite.Store(true)
	}
}

// guardListener wraps accepted connections in guardConn and frontConn, with
// TLS from the start on the implicit-TLS port.
type guardListener struct {
	net.Listener
	implicitTLS bool // false: STARTTLS, negotiated by frontConn
	front       *frontConfig
	// slots holds a token per open connection, shared by both listeners;
	// nil: no bound.
	slots chan struct{}
	// perAddress bounds the connections of each client address, shared by
	// both listeners; nil: no bound.
	perAddress *addressSlots
	metrics    *Metrics
	// greetingWait is the early-talker check on the plain listener (the
	// client speaks first on an implicit-TLS port: its ClientHello).
	greetingWait time.Duration
	log          *slog.Logger
}

func (l guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if fc := l.admit(c); fc != nil {
			return fc, nil
		}
	}
}

// admit takes the connection's slots and wraps it, or refuses it: 421 and
// closed here, without go-smtp, so that a flood of connections costs a
// write and a close each, nothing more.
func (l guardListener) admit(c net.Conn) net.Conn {
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		default:
			l.refuse(c, "too_many_connections", tooManyConnections)
			return nil
		}
	}
	releaseAddress, ok := l.perAddress.take(c.RemoteAddr())
	if !ok {
		if l.slots != nil {
			<-l.slots
		}
		l.refuse(c, "too_many_from_address", tooManyFromAddress)
		return nil
	}
	g := &guardConn{Conn: c, metrics: l.metrics, log: l.log}
	g.release = func() {
		releaseAddress()
		if l.slots != nil {
			<-l.slots
		}
	}
	if l.implicitTLS {
		g.tlsConn = tls.Server(g, l.front.tls)
		g.greeted.Store(true)
		return newFrontConn(g, l.front, g.tlsConn)
	}
	g.greetingWait = l.greetingWait
	return newFrontConn(g, l.front, nil)
}

func (l guardListener) refuse(c net.Conn, reason string, reply []byte) {
	l.metrics.refused.WithLabelValues("connect", reason).Inc()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(reply)
	c.Close()
}
