package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/ids"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

const (
	testUser     = "therapist"
	testPassword = "correct horse battery"
	testFrom     = "therapist@practice.example"
)

// testPKI is a local CA and a server certificate for 127.0.0.1, made by the
// same code sealpost uses on first start.
type testPKI struct {
	dir       string
	cert, key string
	pool      *x509.CertPool
	serverTLS *tls.Config
	caFile    string
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	cert, key, err := tlsconf.EnsureLocalCertificate(dir, "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	conf, err := tlsconf.ServerTLS(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{dir: dir, cert: cert, key: key, pool: pool, serverTLS: conf, caFile: filepath.Join(dir, "ca.pem")}
}

var (
	hashOnce sync.Once
	testHash string
)

func passwordHash(t testing.TB) string {
	hashOnce.Do(func() {
		h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		testHash = string(h)
	})
	return testHash
}

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
	w, err := out.Create("sent")
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, msg); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	c := rules.Copy{Name: "sent", Protection: record.Internal}
	for _, d := range sub.Decisions {
		c.Recipients = append(c.Recipients, d.Recipient)
	}
	return &rules.Result{Plain: "sent", Copies: []rules.Copy{c}, Decisions: sub.Decisions}, nil
}

// memArchive records in memory; failWith makes every write fail.
type memArchive struct {
	mu       sync.Mutex
	messages []archive.Message
	bodies   [][]byte
	events   []archive.Event
	refusals []archive.Refusal
	failWith error
	// afterRead runs once a message's body has been read, before the
	// record is stored (or fails with failWith).
	afterRead func()
}

func (a *memArchive) RecordMessage(ctx context.Context, m archive.Message, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if a.afterRead != nil {
		a.afterRead()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failWith != nil {
		return a.failWith
	}
	a.messages = append(a.messages, m)
	a.bodies = append(a.bodies, b)
	return nil
}

func (a *memArchive) MessagesRecorded(ctx context.Context, ids []string) (map[string]bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	found := map[string]bool{}
	for _, m := range a.messages {
		for _, id := range ids {
			if m.ID == id {
				found[id] = true
			}
		}
	}
	return found, nil
}

func (a *memArchive) RecordEvent(ctx context.Context, e archive.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failWith != nil {
		return a.failWith
	}
	a.events = append(a.events, e)
	return nil
}

func (a *memArchive) RecordRefusal(ctx context.Context, r archive.Refusal) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failWith != nil {
		return a.failWith
	}
	a.refusals = append(a.refusals, r)
	return nil
}

func (a *memArchive) eventKinds(id string) []archive.EventKind {
	a.mu.Lock()
	defer a.mu.Unlock()
	var k []archive.EventKind
	for _, e := range a.events {
		if e.MessageID == id {
			k = append(k, e.Kind)
		}
	}
	return k
}

type relayOpts struct {
	upstream     *Upstream // nil: outbox
	queue        QueueOptions
	policy       *fakePolicy
	archive      *memArchive
	spoolDir     string
	maxBytes     int64
	authDelay    func(ctx context.Context, d time.Duration)
	upstreamUser string
	upstreamPass string
	metrics      *Metrics
	greetingWait time.Duration
	maxConns     int
	maxPerAddr   int
	timeout      time.Duration // default 30s
	trusted      []netip.Prefix
}

type testRelay struct {
	*Server
	addrs   Listeners
	pki     *testPKI
	dataDir string
	archive *memArchive
	policy  *fakePolicy
	logs    *logBuffer
}

func startRelayB(b *testing.B) *testRelay { return startRelay(b, relayOpts{}) }

func startRelay(t testing.TB, o relayOpts) *testRelay {
	t.Helper()
	pki := newPKI(t)
	data := t.TempDir()
	if o.spoolDir == "" {
		o.spoolDir = filepath.Join(data, "spool")
	}
	if o.policy == nil {
		o.policy = &fakePolicy{}
	}
	if o.archive == nil {
		o.archive = &memArchive{}
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
	if o.authDelay == nil {
		o.authDelay = func(context.Context, time.Duration) {}
	}
	if o.timeout == 0 {
		o.timeout = 30 * time.Second
	}
	logs := &logBuffer{}
	red, _ := addr.NewRedactor([]byte("test key for redaction"))
	srv, err := New(Config{
		Hostname: "relay.test", Submission: "127.0.0.1:0", Submissions: "127.0.0.1:0", TLS: pki.serverTLS,
		MaxMessageBytes: o.maxBytes, MaxRecipients: 100, Timeout: o.timeout, GreetingWait: o.greetingWait, MaxConnections: o.maxConns, MaxConnectionsPerAddress: o.maxPerAddr,
		TrustedNetworks: o.trusted,
		Accounts: []Account{{Username: testUser, PasswordHash: passwordHash(t), Addresses: []string{testFrom, "Second@Practice.example"},
			UpstreamUsername: o.upstreamUser, UpstreamPassword: o.upstreamPass}},
		SpoolDir: o.spoolDir, OutboxDir: filepath.Join(data, "outbox"), Upstream: up, Queue: o.queue,
		Policy: o.policy, Archive: o.archive, Metrics: o.metrics,
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Redact:    red.Hash,
		AuthDelay: o.authDelay,
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

// logBuffer collects the relay's log; the relay writes while a test reads.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dial connects with STARTTLS, trusting the relay's local CA.
func (r *testRelay) dial(t *testing.T) *smtp.Client {
	t.Helper()
	c, err := smtp.DialStartTLS(r.addrs.Submission.String(), &tls.Config{RootCAs: r.pki.pool, ServerName: "localhost"})
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

func testMessage(from, to, subject, body string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@test>\r\n\r\n" + body + "\r\n"
}

func send(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	return w.Close()
}

func smtpCode(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	if err == nil {
		return "ok"
	}
	return "error: " + err.Error()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
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

// provider is an in-process submission server standing in for the
// practice's mail provider: TLS, AUTH, and scripted replies.
type provider struct {
	t        *testing.T
	srv      *smtp.Server
	addr     string
	mu       sync.Mutex
	received []providerMsg
	mailErr  func(from string) error
	rcptErr  func(rcpt string) error // per-recipient reply
	dataErr  func() error
	logins   int
	conns    []*smtp.Conn // every connection, in order
	reads    []string     // what each read from a connection returned
	user     string
	pass     string
}

type providerMsg struct {
	from string
	to   []string
	data string
}

func startProvider(t *testing.T, pki *testPKI, mode UpstreamTLS, user, pass string) *provider {
	t.Helper()
	p := &provider{t: t, user: user, pass: pass}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		return &providerSession{p: p, c: c}, nil
	}))
	srv.Domain = "provider.test"
	srv.ErrorLog = testLogger{}
	if mode != NoTLS {
		srv.TLSConfig = pki.serverTLS
	}
	var l net.Listener
	var err error
	if mode == ImplicitTLS {
		l, err = tls.Listen("tcp", "127.0.0.1:0", pki.serverTLS)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	p.srv, p.addr = srv, l.Addr().String()
	if mode == NoTLS {
		l = readsListener{l, p}
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p
}

type testLogger struct{}

func (testLogger) Printf(string, ...interface{}) {}
func (testLogger) Println(...interface{})        {}

// readsListener records what each read from a connection without TLS
// returns: commands written together arrive together on loopback.
type readsListener struct {
	net.Listener
	p *provider
}

func (l readsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return readsConn{c, l.p}, nil
}

type readsConn struct {
	net.Conn
	p *provider
}

func (c readsConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.p.mu.Lock()
	c.p.reads = append(c.p.reads, string(b[:n]))
	c.p.mu.Unlock()
	return n, err
}

func (p *provider) messages() []providerMsg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]providerMsg(nil), p.received...)
}

func (p *provider) upstream(pki *testPKI, mode UpstreamTLS) *Upstream {
	conf, err := tlsconf.ClientTLS("localhost", pki.caFile)
	if err != nil {
		p.t.Fatal(err)
	}
	return &Upstream{Address: p.addr, TLS: mode, TLSConfig: conf, Timeout: 5 * time.Second}
}

type providerSession struct {
	p    *provider
	c    *smtp.Conn
	auth bool
	from string
	to   []string
}

func (s *providerSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *providerSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if _, ok := s.c.TLSConnectionState(); !ok {
			s.p.t.Errorf("credentials sent to the provider without TLS")
		}
		if username != s.p.user || password != s.p.pass {
			return smtp.ErrAuthFailed
		}
		s.p.mu.Lock()
		s.p.logins++
		s.p.mu.Unlock()
		s.auth = true
		return nil
	}), nil
}
func (s *providerSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.p.user != "" && !s.auth {
		return smtp.ErrAuthRequired
	}
	s.p.mu.Lock()
	f := s.p.mailErr
	s.p.mu.Unlock()
	if f != nil {
		if err := f(from); err != nil {
			return err
		}
	}
	s.from = from
	return nil
}
func (s *providerSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.p.mu.Lock()
	f := s.p.rcptErr
	s.p.mu.Unlock()
	if f != nil {
		if err := f(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}
func (s *providerSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.p.mu.Lock()
	f := s.p.dataErr
	s.p.mu.Unlock()
	if f != nil {
		if err := f(); err != nil {
			return err
		}
	}
	s.p.mu.Lock()
	s.p.received = append(s.p.received, providerMsg{from: s.from, to: s.to, data: string(b)})
	s.p.mu.Unlock()
	return nil
}
func (s *providerSession) Reset()        { s.from, s.to = "", nil }
func (s *providerSession) Logout() error { return nil }

// scriptedDlv stands in for the provider in queue tests: it records what
// each job handed over (the copy's body and its recipients), runs before
// ahead of each (tests block there), and answers with reply.
type scriptedDlv struct {
	mu     sync.Mutex
	sent   []sentCopy
	before func(body string)
	// reply answers for one recipient: nil is 250, else the failure.
	reply func(body, rcpt string) *outcome
}

type sentCopy struct {
	id, body string
	rcpts    []string
}

func (d *scriptedDlv) deliver(ctx context.Context, j *job) []outcome {
	r, err := j.open()
	if err != nil {
		return allOutcomes(j, err, false)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	body := string(b)
	d.mu.Lock()
	before, reply := d.before, d.reply
	d.mu.Unlock()
	if before != nil {
		before(body)
	}
	out := make([]outcome, len(j.recipients))
	var took []string
	for i, rc := range j.recipients {
		out[i] = outcome{recipient: rc, reply: "250 2.0.0 ok"}
		if reply != nil {
			if o := reply(body, rc); o != nil {
				out[i] = *o
				out[i].recipient = rc
				continue
			}
		}
		took = append(took, rc)
	}
	d.mu.Lock()
	d.sent = append(d.sent, sentCopy{id: j.id, body: body, rcpts: took})
	d.mu.Unlock()
	return out
}

func (d *scriptedDlv) close() {}

// handedOver lists, per copy body of message id, the recipients the
// provider took.
func (d *scriptedDlv) handedOver(id string) map[string][]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := map[string][]string{}
	for _, s := range d.sent {
		if s.id == id {
			m[s.body] = append(m[s.body], s.rcpts...)
		}
	}
	return m
}

func (d *scriptedDlv) calls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.sent)
}

var tempFailure = &outcome{err: errors.New("451 4.3.0 try later"), reply: "451 4.3.0 try later"}

// newTestQueue starts a queue on a fresh spool without the SMTP side;
// delivery retries wait an hour unless a test says retry.
func newTestQueue(t *testing.T, dlv deliverer, arc *memArchive, workers int, consent ConsentCheck) (*queue, *spool) {
	t.Helper()
	sp, _, err := openSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	red, _ := addr.NewRedactor([]byte("test key for redaction"))
	var rec Recorder
	if arc != nil {
		rec = arc
	}
	q := newQueue(&queue{opts: QueueOptions{Workers: workers, Lifetime: time.Hour, DelayWarning: time.Hour, RetryMin: time.Hour, RetryMax: time.Hour},
		spool: sp, dlv: dlv, archive: rec, account: func(string) *Account { return &Account{Username: testUser} },
		hostname: "relay.test", log: slog.New(slog.NewTextHandler(io.Discard, nil)), redact: red.Hash,
		now: time.Now, metrics: NewMetrics(prometheus.NewRegistry()), consent: consent})
	if err := q.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.stop(5 * time.Second); sp.close() })
	return q, sp
}

// spoolMessage commits a message to sp whose copies hold their own names as
// bodies; it is not queued yet.
func spoolMessage(t *testing.T, sp *spool, copies ...rules.Copy) *entry {
	t.Helper()
	id := ids.New(time.Now())
	in, err := sp.newIncoming(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range copies {
		w, err := in.Create(c.Name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, c.Name)
		w.Close()
	}
	e := newEntry(sp, id, testUser, testFrom, time.Now(), copies, false)
	if err := in.commit(e, false); err != nil {
		t.Fatal(err)
	}
	in.confirm()
	return e
}

// events returns the archived events of message id.
func (a *memArchive) eventsOf(id string) []archive.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []archive.Event
	for _, e := range a.events {
		if e.MessageID == id {
			out = append(out, e)
		}
	}
	return out
}

func (a *memArchive) setFailure(err error) {
	a.mu.Lock()
	a.failWith = err
	a.mu.Unlock()
}

// inQueue says whether message id is still in q.
func inQueue(q *queue, id string) bool {
	for _, m := range q.list() {
		if m.ID == id {
			return true
		}
	}
	return false
}
