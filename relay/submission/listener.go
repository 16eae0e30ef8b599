package submission

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/loginthrottle"
)

// listener admits a client's connection within the connection limits and
// wraps it in a socket and a wire, with TLS from the start on the
// implicit-TLS port.
type listener struct {
	net.Listener
	implicitTLS bool // false: STARTTLS, negotiated by the wire
	wire        *wireConfig
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

func (l listener) Accept() (net.Conn, error) {
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
func (l listener) admit(c net.Conn) net.Conn {
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		default:
			l.refuse(c, replyTooManyConnections)
			return nil
		}
	}
	releaseAddress, ok := l.perAddress.take(c.RemoteAddr())
	if !ok {
		if l.slots != nil {
			<-l.slots
		}
		l.refuse(c, replyTooManyFromAddress)
		return nil
	}
	g := &socket{Conn: c, metrics: l.metrics, log: l.log}
	g.release = func() {
		releaseAddress()
		if l.slots != nil {
			<-l.slots
		}
	}
	if l.implicitTLS {
		g.tlsConn = tls.Server(g, l.wire.tls)
		g.firstWriteDone.Store(true)
		return newWire(g, l.wire, g.tlsConn)
	}
	g.greetingWait = l.greetingWait
	return newWire(g, l.wire, nil)
}

func (l listener) refuse(c net.Conn, r *reply) {
	l.metrics.refused.WithLabelValues("connect", r.reason).Inc()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	r.write(c)
	c.Close()
}

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
func clientPrefix(a net.Addr) netip.Prefix { return loginthrottle.Prefix(clientIP(a)) }

// clientIP is a client's address; not valid for what is not TCP (tests'
// pipes), which all count as one.
func clientIP(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	return ta.AddrPort().Addr().Unmap()
}
