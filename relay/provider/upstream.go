package provider

import (
	"context"
	"crypto/tls"
	"sync"
	"time"
)

// TLSMode is how sealpost talks to the provider.
type TLSMode string

const (
	StartTLS    TLSMode = "starttls"
	ImplicitTLS TLSMode = "implicit"
	// NoTLS is only for a relay on the same machine (a local Postfix, a test
	// sink): configuration refuses it for any address that is not loopback,
	// and no credentials are ever sent over it.
	NoTLS TLSMode = "none"
)

// Config says how to reach the provider's submission server.
type Config struct {
	Address string // host:port
	TLS     TLSMode
	// TLSConfig verifies the provider (RootCAs from ca_file, ServerName);
	// nil only with NoTLS.
	TLSConfig *tls.Config
	Timeout   time.Duration // for each command, reply and handshake
	Hello     string        // the name sealpost says EHLO with
	// IdlePerAccount is how many logged-in connections per account are
	// kept open between messages: as many as deliveries run at once, so
	// that none is opened per message; at least minIdlePerAccount.
	IdlePerAccount int
}

// Upstream delivers to the provider's submission server. It keeps a few
// logged-in connections per account open between messages: a TLS handshake
// and a login per message would cost more than the message.
type Upstream struct {
	cfg Config

	mu   sync.Mutex
	idle map[string][]idleClient // by account
}

// idleClient is a connection between two messages.
type idleClient struct {
	c        *client
	lastUsed time.Time
}

const (
	minIdlePerAccount = 4
	// idleLifetime is how long a connection is kept between messages:
	// providers close idle connections after a minute or so.
	idleLifetime = 30 * time.Second
)

// NewUpstream returns a Deliverer to the provider; it connects on the first
// delivery.
func NewUpstream(cfg Config) *Upstream {
	cfg.IdlePerAccount = max(cfg.IdlePerAccount, minIdlePerAccount)
	return &Upstream{cfg: cfg, idle: map[string][]idleClient{}}
}

func loginKey(l *Login) string {
	if l == nil {
		return ""
	}
	return l.Account
}

// idleClient returns a connection kept open, or nil. It ended its last
// transaction cleanly, so no RSET is needed before the next.
func (u *Upstream) idleClient(l *Login) *client {
	key := loginKey(l)
	u.mu.Lock()
	defer u.mu.Unlock()
	for len(u.idle[key]) > 0 {
		list := u.idle[key]
		ic := list[len(list)-1]
		u.idle[key] = list[:len(list)-1]
		if time.Since(ic.lastUsed) < idleLifetime {
			return ic.c
		}
		go ic.c.close()
	}
	return nil
}

func (u *Upstream) keepIdle(l *Login, c *client) {
	key := loginKey(l)
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.idle[key]) >= u.cfg.IdlePerAccount {
		c.quit()
		return
	}
	u.idle[key] = append(u.idle[key], idleClient{c: c, lastUsed: time.Now()})
}

// Deliver sends j over a connection kept open for its account, or a new one.
func (u *Upstream) Deliver(ctx context.Context, j *Job) []Outcome {
	if c := u.idleClient(j.Login); c != nil {
		out, healthy, stale := c.transaction(j)
		if !stale {
			u.release(j.Login, c, healthy)
			return out
		}
		// The provider closed the idle connection (no reply to MAIL, or
		// 421): nothing was sent; try a fresh connection.
		c.close()
	}
	c, err := u.dial(ctx, j.Login)
	if err != nil {
		// Even a 5xx here (a refused login, "554 no service") says nothing
		// about the recipients: the admin can fix it, so keep the message.
		return allOutcomes(j, err, false)
	}
	out, healthy, _ := c.transaction(j)
	u.release(j.Login, c, healthy)
	return out
}

func (u *Upstream) release(l *Login, c *client, healthy bool) {
	if healthy {
		u.keepIdle(l, c)
	} else {
		c.close()
	}
}

// Close says goodbye on every connection kept open.
func (u *Upstream) Close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, list := range u.idle {
		for _, ic := range list {
			ic.c.quit()
		}
		delete(u.idle, k)
	}
}

// Check logs in to the provider as a delivery would (TLS verified,
// credentials only over TLS) and says goodbye: `sealpost check` and the
// readiness probe use it.
func Check(ctx context.Context, cfg Config, l *Login) error {
	c, err := NewUpstream(cfg).dial(ctx, l)
	if err != nil {
		return err
	}
	return c.quit()
}
