package relay

import (
	"crypto/tls"
	"net"
	"sync/atomic"
)

// guardConn lets the relay end a session right after go-smtp has written a
// reply (too many errors, shutting down): go-smtp offers no way to close a
// connection after its reply, and closing before would lose the reply.
type guardConn struct {
	net.Conn
	closeAfterWrite atomic.Bool

	// TLS handshake bookkeeping for the failure counter (Metrics.countTLS).
	metrics             *Metrics
	tlsStarted, tlsDone atomic.Bool
	closed              atomic.Bool
}

func (g *guardConn) Close() error {
	if g.closed.CompareAndSwap(false, true) && g.tlsStarted.Load() && !g.tlsDone.Load() {
		g.metrics.tlsFailed.Inc()
	}
	return g.Conn.Close()
}

func (g *guardConn) Write(p []byte) (int, error) {
	n, err := g.Conn.Write(p)
	if g.closeAfterWrite.Load() {
		g.Conn.Close()
	}
	return n, err
}

// closeAfterReply marks a session's connection (plain, or TLS over ours) to
// close after the next reply.
func closeAfterReply(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if g, ok := c.(*guardConn); ok {
		g.closeAfterWrite.Store(true)
	}
}

// guardListener wraps accepted connections in guardConn, and in TLS for the
// implicit-TLS port (go-smtp must still see a *tls.Conn there).
type guardListener struct {
	net.Listener
	tls     *tls.Config // nil: plain (STARTTLS is negotiated later)
	metrics *Metrics
}

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g := &guardConn{Conn: c, metrics: l.metrics}
	if l.tls != nil {
		return tls.Server(g, l.tls), nil
	}
	return g, nil
}
