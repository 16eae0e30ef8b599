package auditimap

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// Limits of connections to the view: a handful of auditors use it; a peer
// that opens connections and says nothing must not use up the process.
const (
	maxConnections        = 64
	maxConnectionsPerAddr = 16
)

// handshakeTimeout bounds a TLS handshake (a variable for tests).
var handshakeTimeout = 10 * time.Second

// tlsListener hands the IMAP server only connections whose TLS handshake
// is done: go-imap would start it with its greeting, with no deadline, so
// a silent peer held its goroutine and socket for ever. Handshakes run on
// their own goroutines, so a slow one holds up no other. The server sees
// *tls.Conn (it offers LOGIN only over TLS).
type tlsListener struct {
	net.Listener
	conf *tls.Config

	conns chan net.Conn
	errs  chan error
	done  chan struct{}
	once  sync.Once

	mu     sync.Mutex
	total  int
	byAddr map[string]int
}

func newTLSListener(l net.Listener, conf *tls.Config) *tlsListener {
	t := &tlsListener{Listener: l, conf: conf, conns: make(chan net.Conn), errs: make(chan error, 1),
		done: make(chan struct{}), byAddr: map[string]int{}}
	go t.acceptLoop()
	return t
}

func (t *tlsListener) acceptLoop() {
	for {
		raw, err := t.Listener.Accept()
		if err != nil {
			t.errs <- err
			return
		}
		addr := addrKey(raw.RemoteAddr())
		if !t.admit(addr) {
			raw.Close()
			continue
		}
		go t.handshake(&slotConn{Conn: raw, release: func() { t.leave(addr) }})
	}
}

func (t *tlsListener) handshake(raw net.Conn) {
	tc := tls.Server(raw, t.conf)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		tc.Close()
		return
	}
	select {
	case t.conns <- tc:
	case <-t.done:
		tc.Close()
	}
}

func (t *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-t.conns:
		return c, nil
	case err := <-t.errs:
		return nil, err
	case <-t.done:
		return nil, net.ErrClosed
	}
}

func (t *tlsListener) Close() error {
	t.once.Do(func() { close(t.done) })
	return t.Listener.Close()
}

func (t *tlsListener) admit(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.total >= maxConnections || t.byAddr[addr] >= maxConnectionsPerAddr {
		return false
	}
	t.total++
	t.byAddr[addr]++
	return true
}

func (t *tlsListener) leave(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total--
	if t.byAddr[addr]--; t.byAddr[addr] <= 0 {
		delete(t.byAddr, addr)
	}
}

// slotConn gives its connection slot back when closed, once.
type slotConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *slotConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// addrKey is the address a limit counts by: an IPv4 address, or an IPv6
// /64 (what one host is given and may use whole).
func addrKey(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if v4 := ta.IP.To4(); v4 != nil {
		return v4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String()
}
