package submission

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestLoginCeilingSession: over SMTP, at the account's ceiling the
// therapist's own machine (logged in before) and the practice's network
// still get in; an address never seen does not.
func TestLoginCeilingSession(t *testing.T) {
	r := startServer(t, serverOpts{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	login := func(local string) error {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		conn, err := d.Dial("tcp", r.addrs.Submission.String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := smtp.NewClientStartTLS(conn, &tls.Config{RootCAs: r.pki.Pool, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Auth(sasl.NewPlainClient("", testUser, testPassword))
	}
	if err := login("127.0.0.1"); err != nil {
		t.Fatalf("first login: %v", err)
	}
	for i := 0; i < 100; i++ { // failures from everywhere else
		r.throttle.Fail(time.Now(), "user:"+testUser)
	}
	for _, tt := range []struct{ from, want string }{
		{"127.0.0.1", "ok"},        // logged in before
		{"127.0.0.2", "ok"},        // trusted_networks
		{"127.0.0.3", "454 4.7.0"}, // never seen
	} {
		if got := smtpCode(login(tt.from)); got != tt.want {
			t.Errorf("login from %s at the account's ceiling: %s, want %s", tt.from, got, tt.want)
		}
	}
}
