package submission

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
)

// TestMaxConnections: beyond [smtp] max_connections, on either port, a
// client is told 421 and disconnected; a closed connection frees its slot.
func TestMaxConnections(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	r := startServer(t, serverOpts{maxConns: 2, metrics: m})
	first := rawDial(t, r.addrs.Submission.String())
	rawDial(t, r.addrs.Submission.String())
	for _, addr := range []string{r.addrs.Submission.String(), r.addrs.Submissions.String()} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		if !strings.HasPrefix(line, "421 4.7.0 ") {
			t.Errorf("connection beyond the limit on %s: %q, want 421 4.7.0", addr, line)
		}
		if !relaytest.ClosedByServer(c) {
			t.Errorf("connection beyond the limit on %s left open", addr)
		}
		c.Close()
	}
	if n := promtest.ToFloat64(m.refused.WithLabelValues("connect", "too_many_connections")); n != 2 {
		t.Errorf("refusals{connect,too_many_connections} = %v, want 2", n)
	}
	first.Cmd("QUIT")
	testutil.WaitFor(t, "a free slot", func() bool {
		c, err := net.Dial("tcp", r.addrs.Submission.String())
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(line, "220 ")
	})
}

// TestMaxConnectionsPerAddress: beyond [smtp] max_connections_per_ip, a
// client address is told 421 and disconnected while another address still
// gets in; the refused connection holds none of the server-wide slots.
func TestMaxConnectionsPerAddress(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	r := startServer(t, serverOpts{maxConns: 3, maxPerAddr: 2, metrics: m})
	first := rawDial(t, r.addrs.Submission.String())
	rawDial(t, r.addrs.Submission.String())
	greeting := func(from, addr string) (string, net.Conn) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line, c
	}
	line, c := greeting("127.0.0.1", r.addrs.Submissions.String())
	if !strings.HasPrefix(line, "421 4.7.0 Too many connections from your address") {
		t.Errorf("third connection from 127.0.0.1: %q, want 421 4.7.0 Too many connections from your address", line)
	}
	if !relaytest.ClosedByServer(c) {
		t.Errorf("connection beyond the address's limit left open")
	}
	if line, _ := greeting("127.0.0.2", r.addrs.Submission.String()); !strings.HasPrefix(line, "220 ") {
		t.Errorf("first connection from 127.0.0.2: %q, want the 220 greeting (the last server-wide slot)", line)
	}
	if n := promtest.ToFloat64(m.refused.WithLabelValues("connect", "too_many_from_address")); n != 1 {
		t.Errorf("refusals{connect,too_many_from_address} = %v, want 1", n)
	}
	first.Cmd("QUIT")
	testutil.WaitFor(t, "127.0.0.1's slot back", func() bool {
		line, c := greeting("127.0.0.1", r.addrs.Submission.String())
		c.Close()
		return strings.HasPrefix(line, "220 ")
	})
}

func TestClientPrefix(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"192.0.2.7:41234", "192.0.2.7/32"},
		{"[::ffff:192.0.2.7]:41234", "192.0.2.7/32"},
		{"[2001:db8:1:2:aaaa::1]:587", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:587", "2001:db8:1:2::/64"},
		{"[2001:db8:1:3::1]:587", "2001:db8:1:3::/64"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := clientPrefix(a).String(); got != tt.want {
			t.Errorf("clientPrefix(%s) = %s, want %s", tt.addr, got, tt.want)
		}
	}
}

// TestServerTLSSuites: TLS 1.2 offers only ECDHE with AES-GCM or
// ChaCha20-Poly1305; CBC suites with SHA-1 are refused; TLS 1.1 too.
func TestServerTLSSuites(t *testing.T) {
	r := startServer(t, serverOpts{})
	tests := []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"ECDHE-ECDSA-AES128-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true},
		{"ECDHE-ECDSA-CHACHA20-POLY1305", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true},
		{"ECDHE-ECDSA-AES128-SHA (CBC)", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, false},
		{"ECDHE-ECDSA-AES256-SHA (CBC)", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}}, false},
		{"ECDHE-ECDSA-AES128-SHA256 (CBC)", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, false},
		{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
		{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := tt.client.Clone()
			conf.RootCAs, conf.ServerName = r.pki.Pool, "localhost"
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", r.addrs.Submissions.String(), conf)
			if err == nil {
				c.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("handshake: %v, want success %v", err, tt.ok)
			}
		})
	}
}

func TestImplicitTLS(t *testing.T) {
	r := startServer(t, serverOpts{})
	c, err := smtp.DialTLS(r.addrs.Submissions.String(), &tls.Config{RootCAs: r.pki.Pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", testUser, testPassword)); err != nil {
		t.Fatal(err)
	}
	if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
		t.Fatal(err)
	}
	_, err = tls.Dial("tcp", r.addrs.Submissions.String(), &tls.Config{RootCAs: r.pki.Pool, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Fatal("TLS 1.1 handshake succeeded; only 1.2 and later may")
	}
	// The refusal must be the server's, not the Go client's own minimum.
	if !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.1 failed, but not because the server refused the version: %v", err)
	}
}
