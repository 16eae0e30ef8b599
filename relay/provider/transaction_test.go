package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/relay/internal/relaytest"
)

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
