package auditimap

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestSilentPeers: connections that never start TLS are closed after the
// handshake timeout, and one address cannot hold more than its share while
// a viewer still gets in.
func TestSilentPeers(t *testing.T) {
	f := newFixture(t)
	f.outbound(t, "m1", "Hello", "text", time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), consented("anna@client.example"))
	old := handshakeTimeout
	handshakeTimeout = 300 * time.Millisecond
	t.Cleanup(func() { handshakeTimeout = old })
	addr, tc := f.serve(t, io.Discard)

	var silent []net.Conn
	for i := 0; i < maxConnectionsPerAddr+1; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	// Each is closed: the last at once (over the limit), the others when
	// their handshake times out.
	for i, c := range silent {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("silent connection %d: %v; want it closed by the server", i+1, err)
		}
	}
	// The slots are free again: a viewer logs in.
	c := login(t, addr, tc)
	c.Logout()
}
