package provider

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
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
			pki := testutil.NewPKI(t)
			conf, err := tlsconf.ClientTLS("localhost", pki.CAFile)
			if err != nil {
				t.Fatal(err)
			}
			u := NewUpstream(Config{Address: l.Addr().String(), TLS: StartTLS, TLSConfig: conf, Hello: "relay.test", Timeout: 5 * time.Second})
			a := &Login{Account: "t", Username: "therapist@provider.example", Password: "secret"}
			c, err := u.dial(context.Background(), a)
			if err == nil {
				c.close()
				t.Fatal("dialled a provider without TLS")
			}
			if !strings.Contains(describe(err), tt.wantError) {
				t.Errorf("error %q, want it to say %q", err, tt.wantError)
			}
		})
	}
}

// TestPipelinedTransaction: with a provider that offers PIPELINING, MAIL,
// every RCPT and DATA go out in one write; whatever the provider refuses
// among them, every recipient gets its own reply as its outcome, and the
// connection stays usable for the next message.
func TestPipelinedTransaction(t *testing.T) {
	refuse := func(code int, ec smtp.EnhancedCode, msg string) error {
		return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
	}
	tests := []struct {
		name    string
		mailErr func(string) error
		rcptErr func(string) error
		dataErr func() error
		want    []string // each recipient's reply, in order
		arrives bool
	}{
		{name: "accepted", want: []string{"250 2.0.0", "250 2.0.0"}, arrives: true},
		{name: "one recipient refused", rcptErr: func(r string) error {
			if r == "b@provider.test" {
				return refuse(550, smtp.EnhancedCode{5, 1, 1}, "no such user")
			}
			return nil
		}, want: []string{"250 2.0.0", "550 5.1.1 no such user"}, arrives: true},
		{name: "every recipient refused", rcptErr: func(string) error {
			return refuse(450, smtp.EnhancedCode{4, 2, 1}, "mailbox busy")
		}, want: []string{"450 4.2.1 mailbox busy", "450 4.2.1 mailbox busy"}},
		{name: "sender refused", mailErr: func(string) error {
			return refuse(553, smtp.EnhancedCode{5, 7, 1}, "sender not allowed")
		}, want: []string{"553 5.7.1 sender not allowed", "553 5.7.1 sender not allowed"}},
		{name: "message refused", dataErr: func() error {
			return refuse(554, smtp.EnhancedCode{5, 7, 0}, "content rejected")
		}, want: []string{"554 5.7.0 content rejected", "554 5.7.0 content rejected"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := relaytest.StartProvider(t, nil, string(NoTLS), "", "")
			p.MailErr, p.RcptErr, p.DataErr = tt.mailErr, tt.rcptErr, tt.dataErr
			u := NewUpstream(Config{Address: p.Addr, TLS: NoTLS, Hello: "relay.test", Timeout: 5 * time.Second})
			defer u.Close()
			out := u.Deliver(context.Background(), testJob("a@provider.test", "b@provider.test"))
			for i, o := range out {
				if !strings.HasPrefix(o.Reply, tt.want[i]) || (o.Err == nil) != strings.HasPrefix(tt.want[i], "250") {
					t.Errorf("%s: reply %q (err %v), want %q", o.Recipient, o.Reply, o.Err, tt.want[i])
				}
				if o.Err != nil && o.Permanent != strings.HasPrefix(tt.want[i], "5") {
					t.Errorf("%s: permanent %v for %q", o.Recipient, o.Permanent, o.Reply)
				}
			}
			if got := len(p.Messages()); got != map[bool]int{true: 1}[tt.arrives] {
				t.Errorf("%d messages at the provider", got)
			}
			p.Mu.Lock()
			together := false
			for _, r := range p.Reads {
				together = together || strings.Contains(r, "MAIL FROM:<therapist@practice.test>") && strings.Contains(r, "RCPT TO:<b@provider.test>\r\nDATA\r\n")
			}
			p.Mu.Unlock()
			if !together {
				t.Error("MAIL, RCPT and DATA did not arrive in one piece")
			}

			// The next message goes over the same connection.
			p.Mu.Lock()
			p.MailErr, p.RcptErr, p.DataErr = nil, nil, nil
			p.Mu.Unlock()
			for _, o := range u.Deliver(context.Background(), testJob("c@provider.test")) {
				if o.Err != nil {
					t.Fatalf("next message: %v", o.Err)
				}
			}
			p.Mu.Lock()
			defer p.Mu.Unlock()
			if len(p.Conns) != 1 {
				t.Errorf("%d connections to the provider for two messages, want 1", len(p.Conns))
			}
		})
	}
}

// TestPooledConnectionGone: a provider that closed an idle connection, or
// answers MAIL on it with 421, costs the message no retry delay: it goes
// out at once over a new connection.
func TestPooledConnectionGone(t *testing.T) {
	for _, how := range []string{"closed", "421"} {
		t.Run(how, func(t *testing.T) {
			p := relaytest.StartProvider(t, nil, string(NoTLS), "", "")
			u := NewUpstream(Config{Address: p.Addr, TLS: NoTLS, Hello: "relay.test", Timeout: 5 * time.Second})
			defer u.Close()
			if o := u.Deliver(context.Background(), testJob("a@provider.test")); o[0].Err != nil {
				t.Fatal(o[0].Err)
			}
			p.Mu.Lock()
			first := p.Conns[0]
			if how == "closed" {
				first.Close()
			} else {
				var said atomic.Bool
				p.MailErr = func(string) error {
					if said.Swap(true) {
						return nil
					}
					return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "idle too long, closing"}
				}
			}
			p.Mu.Unlock()
			if o := u.Deliver(context.Background(), testJob("b@provider.test")); o[0].Err != nil {
				t.Fatalf("second message: %v", o[0].Err)
			}
			if n := len(p.Messages()); n != 2 {
				t.Fatalf("%d messages at the provider, want 2", n)
			}
			p.Mu.Lock()
			defer p.Mu.Unlock()
			if len(p.Conns) != 2 {
				t.Errorf("%d connections, want 2", len(p.Conns))
			}
		})
	}
}

func testJob(rcpts ...string) *Job {
	return &Job{ID: "test", From: "therapist@practice.test", Recipients: rcpts,
		Open: func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("Subject: notes\r\n\r\n.leading dot\r\n")), nil
		}}
}
