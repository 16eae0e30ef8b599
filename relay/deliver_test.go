package relay

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestProviderSTARTTLSDialogue: before TLS sealpost itself greets the
// provider and asks for STARTTLS; a provider that does not offer it, refuses
// it, or has plaintext injected behind its 220 (CVE-2011-0411) gets no
// message and no password.
func TestProviderSTARTTLSDialogue(t *testing.T) {
	tests := []struct {
		name      string
		ehlo      string // the reply to EHLO
		starttls  string // the reply to STARTTLS
		wantError string
	}{
		{"not offered", "250-provider.test\r\n250 AUTH PLAIN\r\n", "", errNoTLS.Error()},
		{"refused", "250-provider.test\r\n250 STARTTLS\r\n", "454 4.7.0 TLS not available\r\n", "454 4.7.0 TLS not available"},
		{"plaintext injected after the 220", "250-provider.test\r\n250 STARTTLS\r\n", "220 go ahead\r\n250 injected\r\n", "data before the TLS handshake"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				r := bufio.NewReader(c)
				c.Write([]byte("220 provider.test ESMTP\r\n"))
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch strings.ToUpper(strings.TrimSpace(line)) {
					case "STARTTLS":
						// One write: the injected line arrives with the 220.
						c.Write([]byte(tt.starttls))
					case "QUIT":
						c.Write([]byte("221 bye\r\n"))
						return
					default:
						c.Write([]byte(tt.ehlo))
					}
				}
			}()
			pki := newPKI(t)
			conf, err := ClientTLS("localhost", pki.caFile)
			if err != nil {
				t.Fatal(err)
			}
			u := newSMTPUpstream(l.Addr().String(), StartTLS, conf, "relay.test", 5*time.Second)
			a := &Account{Username: "t", UpstreamUsername: "therapist@provider.example", UpstreamPassword: "secret"}
			c, err := u.dial(context.Background(), a)
			if err == nil {
				c.Close()
				t.Fatal("dialled a provider without TLS")
			}
			if !strings.Contains(describe(err), tt.wantError) {
				t.Errorf("error %q, want it to say %q", err, tt.wantError)
			}
		})
	}
}
