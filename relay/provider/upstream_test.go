package provider

import (
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/relay/internal/relaytest"
)

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
