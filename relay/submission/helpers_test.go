package submission

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/ids"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
	"github.com/sealpost/sealpost/rules"
)

const (
	testUser     = relaytest.User
	testPassword = relaytest.Password
	testFrom     = relaytest.From
	authPlain    = relaytest.AuthPlain
)

// fakeRelay stands in for the stages after the dialogue: it decides from a
// table (default: internal) as the relay does, and takes a message in by
// reading it through the header and line checks to its end.
type fakeRelay struct {
	mu       sync.Mutex
	decide   func(rcpt string) (record.Decision, error)
	messages []string         // the messages taken in, as they would be spooled
	refusals []*rules.Refusal // recorded, with the references given
	refs     int
}

func (r *fakeRelay) Decide(ctx context.Context, account, rcpt string) (record.Decision, error) {
	r.mu.Lock()
	f := r.decide
	r.mu.Unlock()
	n, _ := addr.Normalize(rcpt)
	d := record.Decision{Address: n, Protection: record.Internal}
	if f != nil {
		var err error
		if d, err = f(rcpt); err != nil {
			return d, err
		}
	}
	if d.Address == "" {
		d.Address = rcpt
	}
	d.Recipient = d.Address
	if d.Protection == record.Refused {
		refusal := &rules.Refusal{Reason: d.Reason, Code: d.RefusalCode}
		r.RecordRefusal(ctx, nil, account, refusal)
		return d, refusal
	}
	return d, nil
}

// RecordRefusal gives references REF001, REF002, ... in order.
func (r *fakeRelay) RecordRefusal(ctx context.Context, log *slog.Logger, account string, refusal *rules.Refusal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if refusal.Ref == "" {
		r.refs++
		refusal.Ref = fmt.Sprintf("REF%03d", r.refs)
	}
	r.refusals = append(r.refusals, refusal)
}

// recorded returns the refusals recorded so far.
func (r *fakeRelay) recorded() []*rules.Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*rules.Refusal(nil), r.refusals...)
}

func (r *fakeRelay) Accept(ctx context.Context, log *slog.Logger, env Envelope, msg io.Reader) (Accepted, error) {
	id, err := r.accept(msg, env)
	return Accepted{ID: id}, err
}

func (r *fakeRelay) accept(msg io.Reader, env Envelope) (string, error) {
	id := ids.New(time.Now())
	m, err := ReadMessage(msg, env.Account, "relay.test", id, time.Now(), false)
	if err != nil {
		return "", err
	}
	defer m.Close()
	b, err := io.ReadAll(m)
	if bad := m.InputError(); bad != nil {
		return "", bad
	}
	if err != nil {
		return "", err
	}
	if err := m.ReadRest(); err != nil {
		return "", err
	}
	r.mu.Lock()
	r.messages = append(r.messages, string(b))
	r.mu.Unlock()
	return id, nil
}

// accepted returns the messages taken in so far.
func (r *fakeRelay) accepted() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.messages...)
}

type serverOpts struct {
	maxBytes     int64
	authDelay    func(ctx context.Context, d time.Duration)
	metrics      *Metrics
	greetingWait time.Duration
	maxConns     int
	maxPerAddr   int
	timeout      time.Duration // default 30s
	trusted      []netip.Prefix
}

type testServer struct {
	*Server
	addrs Listeners
	pki   *testutil.PKI
	relay *fakeRelay
	logs  *testutil.LockedBuffer
}

// startServer listens on both ports of loopback, with the test account.
func startServer(t testing.TB, o serverOpts) *testServer {
	t.Helper()
	pki := testutil.NewPKI(t)
	if o.maxBytes == 0 {
		o.maxBytes = 1 << 20
	}
	if o.authDelay == nil {
		o.authDelay = func(context.Context, time.Duration) {}
	}
	if o.timeout == 0 {
		o.timeout = 30 * time.Second
	}
	if o.metrics == nil {
		o.metrics = NewMetrics(prometheus.NewRegistry())
	}
	logs := &testutil.LockedBuffer{}
	red, _ := addr.NewRedactor([]byte("test key for redaction"))
	relay := &fakeRelay{}
	srv, err := New(Config{
		Listening: Listening{Hostname: "relay.test", Submission: "127.0.0.1:0", Submissions: "127.0.0.1:0", TLS: pki.ServerTLS,
			MaxMessageBytes: o.maxBytes, MaxRecipients: 100, Timeout: o.timeout, GreetingWait: o.greetingWait,
			MaxConnections: o.maxConns, MaxConnectionsPerAddress: o.maxPerAddr, TrustedNetworks: o.trusted},
		Relay: relay, Metrics: o.metrics, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Redact: red.Hash, Now: time.Now, AuthDelay: o.authDelay,
	}, []Account{{Username: testUser, PasswordHash: relaytest.PasswordHash(), Addresses: []string{testFrom, "Second@Practice.example"}}})
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &testServer{Server: srv, addrs: addrs, pki: pki, relay: relay, logs: logs}
}

// dial connects with STARTTLS, trusting the test PKI.
func (r *testServer) dial(t *testing.T) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(r.addrs.Submission.String(), r.pki.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (r *testServer) login(t *testing.T) *smtp.Client {
	t.Helper()
	c := r.dial(t)
	if err := c.Auth(sasl.NewPlainClient("", testUser, testPassword)); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

// rawDial connects to addr by hand and reads the greeting.
func rawDial(t *testing.T, addr string) *relaytest.RawSession { return relaytest.RawDial(t, addr) }

// loggedIn returns a raw session inside TLS, logged in.
func loggedIn(t *testing.T, r *testServer) *relaytest.RawSession {
	t.Helper()
	s := rawDial(t, r.addrs.Submission.String())
	s.Cmd("EHLO client.test")
	s.StartTLS(r.pki.Pool)
	s.Cmd("EHLO client.test")
	if code, msg := s.Cmd(authPlain); code != 235 {
		t.Fatalf("AUTH: %d %s", code, msg)
	}
	return s
}

var (
	testMessage = relaytest.Message
	send        = relaytest.Send
	smtpCode    = relaytest.SMTPCode
)
