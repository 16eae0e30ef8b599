package submission

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// socket is a client's TCP connection with what the listener keeps on it:
// the connection slots it holds (released on Close), the early-talker check
// before the greeting, the TLS handshake's outcome for the failure counter,
// and a close right after go-smtp's next reply (too many errors, shutting
// down): go-smtp offers no way to close a connection after its reply, and
// closing before would lose the reply.
type socket struct {
	net.Conn
	closeAfterWrite atomic.Bool

	// TLS handshake bookkeeping for the failure counter: a handshake has
	// started once the client's hello arrived (Metrics.countTLS). It failed
	// when the wire's handshake fails, or when an implicit-TLS connection
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
	// firstWriteDone: the first write (the greeting) has gone out, after
	// the early-talker check.
	firstWriteDone atomic.Bool
	log            *slog.Logger

	release func() // gives back the connection's slots (listener.slots, perAddress)
}

// talksFirst reports whether the client sends anything within the greeting
// wait. What it sent is discarded: the session ends either way.
func (g *socket) talksFirst() bool {
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

func (g *socket) countFailure() {
	if g.tlsStarted.Load() && g.tlsFailed.CompareAndSwap(false, true) {
		g.metrics.tlsFailed.Inc()
	}
}

func (g *socket) Close() error {
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

func (g *socket) Write(p []byte) (int, error) {
	if g.firstWriteDone.CompareAndSwap(false, true) {
		if g.greetingWait > 0 && g.talksFirst() {
			g.metrics.refused.WithLabelValues("connect", replyEarlyTalker.reason).Inc()
			g.log.Info("refused a client that talked before the greeting", "remote", g.Conn.RemoteAddr().String())
			replyEarlyTalker.write(g.Conn)
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
	if f := wireOf(c); f != nil {
		f.socket.closeAfterWrite.Store(true)
	}
}
