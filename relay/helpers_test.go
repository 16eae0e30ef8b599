package relay

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/internal/tlsconf"
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

// The spool file's trailers (queue/spool.go): the record durable, or being
// written when the file was committed.
const (
	spoolMagic    = "\nSEALPOST-SPOOL1\n"
	awaitingMagic = "\nSEALPOST-SPOOLA\n"
)

var (
	testMessage = relaytest.Message
	send        = relaytest.Send
	smtpCode    = relaytest.SMTPCode
)

// fakePolicy decides from a table (default: internal) and copies the
// message unchanged into one plain copy.
type fakePolicy struct {
	mu         sync.Mutex
	decide     func(rcpt string) (record.Decision, error)
	applyErr   error
	encryptErr error
}

func (p *fakePolicy) Decide(ctx context.Context, account, rcpt string) (record.Decision, error) {
	p.mu.Lock()
	f := p.decide
	p.mu.Unlock()
	if f != nil {
		return f(rcpt)
	}
	n, _ := addr.Normalize(rcpt)
	return record.Decision{Address: n, Protection: record.Internal}, nil
}

func (p *fakePolicy) EncryptCopies(context.Context, rules.Sink, *rules.Result) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.encryptErr
}

func (p *fakePolicy) Prepare(ctx context.Context, sub rules.Submission, msg io.Reader, out rules.Sink) (*rules.Result, error) {
	if p.applyErr != nil {
		return nil, p.applyErr
	}
	w, err := out.Create(rules.SubmittedCopyName)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, msg); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	c := rules.Copy{Name: rules.SubmittedCopyName, Protection: record.Internal}
	for _, d := range sub.Decisions {
		c.Recipients = append(c.Recipients, d.Recipient)
	}
	return &rules.Result{Plain: rules.SubmittedCopyName, Copies: []rules.Copy{c}, Decisions: sub.Decisions}, nil
}

type relayOpts struct {
	upstream     *Upstream // nil: outbox
	queue        QueueOptions
	policy       *fakePolicy
	rules        Rules // instead of policy: the real one (sealed_test.go)
	consentCheck ConsentCheck
	sealedCheck  SealedCheck
	archive      *relaytest.Archive
	spoolDir     string
	maxBytes     int64
	upstreamUser string
	upstreamPass string
	metrics      *Metrics
	timeout      time.Duration // default 30s
	trusted      []netip.Prefix
}

type testRelay struct {
	*Server
	addrs   Listeners
	pki     *testutil.PKI
	dataDir string
	archive *relaytest.Archive
	policy  *fakePolicy
	logs    *testutil.LockedBuffer
}

func startRelayB(b *testing.B) *testRelay { return startRelay(b, relayOpts{}) }

func startRelay(t testing.TB, o relayOpts) *testRelay {
	t.Helper()
	pki := testutil.NewPKI(t)
	data := t.TempDir()
	if o.spoolDir == "" {
		o.spoolDir = filepath.Join(data, "spool")
	}
	if o.policy == nil {
		o.policy = &fakePolicy{}
	}
	var policy Rules = o.policy
	if o.rules != nil {
		policy = o.rules
	}
	if o.archive == nil {
		o.archive = &relaytest.Archive{}
	}
	if o.queue.Workers == 0 {
		o.queue = QueueOptions{Workers: 2, Lifetime: time.Hour, DelayWarning: time.Hour, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	}
	if o.maxBytes == 0 {
		o.maxBytes = 1 << 20
	}
	up := Upstream{Address: "outbox"}
	if o.upstream != nil {
		up = *o.upstream
	}
	if o.timeout == 0 {
		o.timeout = 30 * time.Second
	}
	logs := &testutil.LockedBuffer{}
	red, _ := addr.NewRedactor([]byte("test key for redaction"))
	srv, err := New(Config{
		Listening: Listening{Hostname: "relay.test", Submission: "127.0.0.1:0", Submissions: "127.0.0.1:0", TLS: pki.ServerTLS,
			MaxMessageBytes: o.maxBytes, MaxRecipients: 100, Timeout: o.timeout, TrustedNetworks: o.trusted},
		Accounts: []Account{{Username: testUser, PasswordHash: relaytest.PasswordHash(), Addresses: []string{testFrom, "Second@Practice.example"},
			UpstreamUsername: o.upstreamUser, UpstreamPassword: o.upstreamPass}},
		SpoolDir: o.spoolDir, OutboxDir: filepath.Join(data, "outbox"), Upstream: up, Queue: o.queue,
		Rules: policy, ConsentCheck: o.consentCheck, SealedCheck: o.sealedCheck, Archive: o.archive, Metrics: o.metrics,
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Redact:    red.Hash,
		AuthDelay: func(context.Context, time.Duration) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	tr := &testRelay{Server: srv, addrs: addrs, pki: pki, dataDir: data, archive: o.archive, policy: o.policy, logs: logs}
	t.Cleanup(func() { srv.Shutdown(5 * time.Second) })
	return tr
}

// dial connects with STARTTLS, trusting the relay's local CA.
func (r *testRelay) dial(t *testing.T) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(r.addrs.Submission.String(), r.pki.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (r *testRelay) login(t *testing.T) *smtp.Client {
	t.Helper()
	c := r.dial(t)
	if err := c.Auth(sasl.NewPlainClient("", testUser, testPassword)); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

// loggedIn returns a raw session inside TLS, logged in.
func loggedIn(t *testing.T, r *testRelay) *relaytest.RawSession {
	t.Helper()
	s := relaytest.RawDial(t, r.addrs.Submission.String())
	s.Cmd("EHLO client.test")
	s.StartTLS(r.pki.Pool)
	s.Cmd("EHLO client.test")
	if code, msg := s.Cmd(authPlain); code != 235 {
		t.Fatalf("AUTH: %d %s", code, msg)
	}
	return s
}

func outboxFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(dir, "outbox", "new"))
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "outbox", "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// upstreamOf is how the relay reaches provider p, trusting pki.
func upstreamOf(t *testing.T, p *relaytest.Provider, pki *testutil.PKI, mode UpstreamTLS) *Upstream {
	conf, err := tlsconf.ClientTLS("localhost", pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return &Upstream{Address: p.Addr, TLS: mode, TLSConfig: conf, Timeout: 5 * time.Second}
}

func loginThen(c *smtp.Client, f func() error) error {
	if err := c.Auth(sasl.NewPlainClient("", testUser, testPassword)); err != nil {
		return err
	}
	return f()
}
