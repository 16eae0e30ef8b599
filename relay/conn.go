package relay

import (
	"bytes"
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

	// TLS handshake bookkeeping for the failure counter: a handshake has
	// started once the client's hello arrived (Metrics.countTLS). It failed
	// when go-smtp answers STARTTLS's handshake with its plaintext error
	// reply, or when an implicit-TLS connection (tlsConn) closes with its
	// handshake incomplete.
	metrics    *Metrics
	tlsConn    *tls.Conn
	tlsStarted atomic.Bool
	tlsFailed  atomic.Bool
	closed     atomic.Bool
}

// starttlsFailed is what go-smtp writes, in plaintext, when a STARTTLS
// handshake fails (TestMetrics notices if a go-smtp upgrade changes it).
var starttlsFailed = []byte("550 5.0.0 Handshake error")

func (g *guardConn) countFailure() {
	if g.tlsStarted.Load() && g.tlsFailed.CompareAndSwap(false, true) {
		g.metrics.tlsFailed.Inc()
	}
}

func (g *guardConn) Close() error {
	err := g.Conn.Close()
	// Only after the close: ConnectionState waits for a handshake in progress,
	// which the close ends.
	if g.closed.CompareAndSwap(false, true) && g.tlsConn != nil && !g.tlsConn.ConnectionState().HandshakeComplete {
		g.countFailure()
	}
	return err
}

func (g *guardConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, starttlsFailed) {
		g.countFailure()
	}
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
		g.tlsConn = tls.Server(g, l.tls)
		return g.tlsConn, nil
	}
	return g, nil
}
