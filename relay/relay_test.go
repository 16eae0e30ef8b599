package relay

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
)

func TestUpstreamDelivery(t *testing.T) {
	for _, mode := range []UpstreamTLS{StartTLS, ImplicitTLS} {
		t.Run(string(mode), func(t *testing.T) {
			pki := testutil.NewPKI(t)
			p := relaytest.StartProvider(t, pki, string(mode), "therapist@provider.example", "upstream-secret")
			r := startRelay(t, relayOpts{upstream: upstreamOf(t, p, pki, mode), upstreamUser: "therapist@provider.example", upstreamPass: "upstream-secret"})
			c := r.login(t)
			for i := 0; i < 3; i++ {
				if err := send(c, testFrom, []string{"a@practice.example", "b@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
					t.Fatal(err)
				}
			}
			testutil.WaitFor(t, "three messages at the provider", func() bool { return len(p.Messages()) == 3 })
			m := p.Messages()[0]
			if m.From != testFrom || strings.Join(m.To, ",") != "a@practice.example,b@practice.example" {
				t.Errorf("provider got MAIL FROM %q RCPT %v", m.From, m.To)
			}
			p.Mu.Lock()
			logins := p.Logins
			p.Mu.Unlock()
			if logins < 1 || logins > 3 {
				t.Errorf("%d logins at the provider", logins)
			}
			testutil.WaitFor(t, "empty queue", func() bool { return len(r.Queue()) == 0 })
		})
	}
}

// TestProviderReplies: 5xx is final (bounce to the sender), 4xx and network
// trouble are retried, and only what failed is retried.
func TestProviderReplies(t *testing.T) {
	pki := testutil.NewPKI(t)
	p := relaytest.StartProvider(t, pki, string(StartTLS), "", "")
	var tempFailures atomic.Int32
	p.RcptErr = func(rcpt string) error {
		switch rcpt {
		case "gone@practice.example":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case "busy@practice.example":
			if tempFailures.Add(1) <= 2 {
				// Providers name the recipient in their replies (Postfix:
				// "<x@y>: Recipient address rejected").
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "<busy@practice.example>: try later"}
			}
		}
		return nil
	}
	r := startRelay(t, relayOpts{upstream: upstreamOf(t, p, pki, StartTLS)})
	c := r.login(t)
	rcpts := []string{"ok@practice.example", "gone@practice.example", "busy@practice.example"}
	if err := send(c, testFrom, rcpts, testMessage(testFrom, "ok@practice.example", "report", "x")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the queue to drain", func() bool { return len(r.Queue()) == 0 && len(p.Messages()) >= 3 })
	var toOK, toBusy, bounces int
	var bounce relaytest.ProviderMessage
	for _, m := range p.Messages() {
		switch {
		case m.From == testFrom && len(m.To) == 1 && m.To[0] == testFrom && strings.Contains(m.Data, "multipart/report"):
			bounces++
			bounce = m
		default:
			for _, to := range m.To {
				switch to {
				case "ok@practice.example":
					toOK++
				case "busy@practice.example":
					toBusy++
				}
			}
		}
	}
	if toOK != 1 || toBusy != 1 || bounces != 1 {
		t.Fatalf("provider got %d copies for ok, %d for busy, %d bounces; want 1, 1, 1", toOK, toBusy, bounces)
	}
	for _, want := range []string{"Content-Type: multipart/report; report-type=delivery-status", "Final-Recipient: rfc822; gone@practice.example",
		"Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 no such user", "Auto-Submitted: auto-replied", "Subject: report"} {
		if !strings.Contains(bounce.Data, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce.Data)
		}
	}
	if strings.Contains(bounce.Data, "busy@practice.example") {
		t.Error("bounce names a recipient that was delivered")
	}
	if logs := r.logs.String(); !strings.Contains(logs, "try later") || strings.Contains(logs, "busy@practice.example") {
		t.Errorf("the log should carry the provider's reply without the address it names:\n%s", logs)
	}
	id := r.archive.Messages[0].ID
	kinds := r.archive.EventKinds(id)
	if !relaytest.ContainsKind(kinds, archive.Delivered) || !relaytest.ContainsKind(kinds, archive.Deferred) || !relaytest.ContainsKind(kinds, archive.Bounced) {
		t.Errorf("archived outcomes %v; want delivered, deferred and bounced", kinds)
	}
}

// TestNeverInClear: a provider that stops offering STARTTLS, or whose
// certificate does not verify, gets nothing; the message waits.
func TestNeverInClear(t *testing.T) {
	pki := testutil.NewPKI(t)
	tests := []struct {
		name  string
		setup func(t *testing.T) *Upstream
	}{
		{"no STARTTLS offered", func(t *testing.T) *Upstream {
			p := relaytest.StartProvider(t, pki, string(NoTLS), "", "")
			return upstreamOf(t, p, pki, StartTLS)
		}},
		{"certificate from an unknown CA", func(t *testing.T) *Upstream {
			p := relaytest.StartProvider(t, testutil.NewPKI(t), string(StartTLS), "", "")
			return upstreamOf(t, p, pki, StartTLS)
		}},
		{"certificate for another name", func(t *testing.T) *Upstream {
			p := relaytest.StartProvider(t, pki, string(ImplicitTLS), "", "")
			u := upstreamOf(t, p, pki, ImplicitTLS)
			u.TLSConfig.ServerName = "smtp.provider.example"
			return u
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := tt.setup(t)
			r := startRelay(t, relayOpts{upstream: up, upstreamUser: "u@provider.example", upstreamPass: "secret"})
			c := r.login(t)
			if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, "two failed attempts", func() bool {
				q := r.Queue()
				return len(q) == 1 && q[0].Attempts >= 2
			})
			q := r.Queue()[0]
			if q.Pending != 1 || q.LastError == "" {
				t.Fatalf("queue entry %+v; want the recipient still pending with the reason", q)
			}
		})
	}
}

// TestLifetimeAndDelayNotice: an unreachable provider gets a delay notice to
// the sender once, then a bounce when the lifetime ends.
func TestLifetimeAndDelayNotice(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	pki := testutil.NewPKI(t)
	conf, _ := tlsconf.ClientTLS("localhost", pki.CAFile)
	r := startRelay(t, relayOpts{
		upstream: &Upstream{Address: dead, TLS: StartTLS, TLSConfig: conf, Timeout: time.Second},
		queue:    QueueOptions{Workers: 1, Lifetime: 400 * time.Millisecond, DelayWarning: 100 * time.Millisecond, RetryMin: 20 * time.Millisecond, RetryMax: 40 * time.Millisecond},
	})
	c := r.login(t)
	if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
		t.Fatal(err)
	}
	id := r.archive.Messages[0].ID
	testutil.WaitFor(t, "a bounce", func() bool { return relaytest.ContainsKind(r.archive.EventKinds(id), archive.Bounced) })
	kinds := r.archive.EventKinds(id)
	delayed := 0
	for _, k := range kinds {
		if k == archive.Delayed {
			delayed++
		}
	}
	if delayed != 1 {
		t.Errorf("delay notices: %d, want exactly 1 (%v)", delayed, kinds)
	}
	// Both notices are queued for the sender; the provider is down, so they
	// wait in the queue until their own lifetime ends, and then are dropped
	// without notices of their own. Watch the queue until it empties: each
	// notice stays at least the lifetime (400 ms), far longer than a poll.
	seen := map[string]bool{} // ID → is a notice
	testutil.WaitFor(t, "the queue to empty", func() bool {
		q := r.Queue()
		for _, m := range q {
			seen[m.ID] = m.Notice
		}
		return len(q) == 0
	})
	notices := 0
	for queued, notice := range seen {
		if notice {
			notices++
		} else if queued != id {
			t.Errorf("unexpected message %s in the queue", queued)
		}
	}
	if notices != 2 {
		t.Fatalf("%d notices queued; want the delay notice and the bounce, nothing else", notices)
	}
}

// TestRestartResumes: what was accepted survives a stop and is delivered by
// the next process; half-received spool folders are removed, not sent.
func TestRestartResumes(t *testing.T) {
	pki := testutil.NewPKI(t)
	p := relaytest.StartProvider(t, pki, string(StartTLS), "", "")
	var down atomic.Bool
	down.Store(true)
	p.DataErr = func() error {
		if down.Load() {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "down for maintenance"}
		}
		return nil
	}
	spool := filepath.Join(t.TempDir(), "spool")
	r := startRelay(t, relayOpts{upstream: upstreamOf(t, p, pki, StartTLS), spoolDir: spool})
	c := r.login(t)
	for i := 0; i < 5; i++ {
		if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	r.Shutdown(5 * time.Second)
	// A crash mid-DATA leaves a file without its trailer.
	half := filepath.Join(spool, "queue", "0000000000000half.msg")
	os.WriteFile(half, []byte("From: x\r\n"), 0o600)

	down.Store(false)
	r2 := startRelay(t, relayOpts{upstream: upstreamOf(t, p, pki, StartTLS), spoolDir: spool})
	testutil.WaitFor(t, "five messages at the provider", func() bool { return len(p.Messages()) == 5 })
	testutil.WaitFor(t, "empty queue", func() bool { return len(r2.Queue()) == 0 })
	if _, err := os.Stat(half); !os.IsNotExist(err) {
		t.Fatal("half-received message was not cleaned up")
	}
	if k := r2.archive.EventKinds("0000000000000half"); len(k) != 1 || k[0] != archive.Aborted {
		t.Errorf("the cut-off message is not marked aborted in the archive: %v", k)
	}
}

func TestQueueRetryAndDrop(t *testing.T) {
	pki := testutil.NewPKI(t)
	p := relaytest.StartProvider(t, pki, string(StartTLS), "", "")
	var down atomic.Bool
	down.Store(true)
	p.DataErr = func() error {
		if down.Load() {
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "full"}
		}
		return nil
	}
	r := startRelay(t, relayOpts{upstream: upstreamOf(t, p, pki, StartTLS),
		queue: QueueOptions{Workers: 1, Lifetime: time.Hour, DelayWarning: time.Hour, RetryMin: time.Hour, RetryMax: time.Hour}})
	c := r.login(t)
	for i := 0; i < 2; i++ {
		if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, "both tried once", func() bool {
		q := r.Queue()
		return len(q) == 2 && q[0].Attempts == 1 && q[1].Attempts == 1
	})
	q := r.Queue()
	if _, err := r.Drop(q[0].ID[:4]); err == nil || !strings.Contains(err.Error(), "several") {
		t.Fatalf("drop by an ambiguous prefix: %v", err)
	}
	if _, err := r.Drop(q[0].ID); err != nil {
		t.Fatal(err)
	}
	down.Store(false)
	if _, err := r.Retry(q[1].ID); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the retried message delivered", func() bool { return len(p.Messages()) == 1 && len(r.Queue()) == 0 })
	if !relaytest.ContainsKind(r.archive.EventKinds(q[0].ID), archive.Dropped) {
		t.Error("the drop is not in the archive")
	}
	if _, err := r.Retry("ffffffff"); err == nil {
		t.Error("retry of an unknown id succeeded")
	}
}

// TestRetryDuringAttempt: "sealpost queue retry" while a delivery attempt
// is under way makes the message due again right after that attempt, not
// after its backoff (an hour here).
func TestRetryDuringAttempt(t *testing.T) {
	pki := testutil.NewPKI(t)
	p := relaytest.StartProvider(t, pki, string(StartTLS), "", "")
	inAttempt, release := make(chan struct{}, 1), make(chan struct{})
	var attempts atomic.Int32
	p.DataErr = func() error {
		if attempts.Add(1) == 1 {
			inAttempt <- struct{}{}
			<-release
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "full"}
		}
		return nil
	}
	r := startRelay(t, relayOpts{upstream: upstreamOf(t, p, pki, StartTLS),
		queue: QueueOptions{Workers: 1, Lifetime: time.Hour, DelayWarning: time.Hour, RetryMin: time.Hour, RetryMax: time.Hour}})
	c := r.login(t)
	if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
		t.Fatal(err)
	}
	<-inAttempt
	q := r.Queue()
	if len(q) != 1 || q[0].Attempts != 0 {
		t.Fatalf("queue during the first attempt: %+v", q)
	}
	if _, err := r.Retry(q[0].ID); err != nil {
		t.Fatal(err)
	}
	close(release)
	testutil.WaitFor(t, "the second attempt to deliver", func() bool { return len(p.Messages()) == 1 && len(r.Queue()) == 0 })
}

// TestShutdownFinishesSessions: SIGTERM lets a message being transferred
// finish (and be answered 250), takes no new connections, and keeps what it
// accepted for the next start.
func TestShutdownFinishesSessions(t *testing.T) {
	pki := testutil.NewPKI(t)
	p := relaytest.StartProvider(t, pki, string(StartTLS), "", "")
	var down atomic.Bool
	down.Store(true)
	p.DataErr = func() error {
		if down.Load() {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
		}
		return nil
	}
	spool := filepath.Join(t.TempDir(), "spool")
	r := startRelay(t, relayOpts{upstream: upstreamOf(t, p, pki, StartTLS), spoolDir: spool,
		queue: QueueOptions{Workers: 1, Lifetime: time.Hour, DelayWarning: time.Hour, RetryMin: time.Hour, RetryMax: time.Hour}})
	c := r.login(t)
	if err := c.Mail(testFrom, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@practice.example", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("From: " + testFrom + "\r\nSubject: in flight\r\n\r\nfirst half\r\n"))
	stopped := make(chan struct{})
	go func() { r.Shutdown(10 * time.Second); close(stopped) }()
	testutil.WaitFor(t, "the listeners to close", func() bool {
		conn, err := net.DialTimeout("tcp", r.addrs.Submission.String(), time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	w.Write([]byte("second half\r\n"))
	if err := w.Close(); err != nil {
		t.Fatalf("the message in flight was not accepted: %v", err)
	}
	c.Quit()
	<-stopped

	down.Store(false)
	r2 := startRelay(t, relayOpts{upstream: upstreamOf(t, p, pki, StartTLS), spoolDir: spool})
	q := r2.Queue()
	if len(q) != 1 {
		t.Fatalf("after the restart the queue holds %d messages, want 1", len(q))
	}
	if _, err := r2.Retry(q[0].ID); err != nil { // it was tried once before the stop; no need to wait an hour
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the message at the provider after the restart", func() bool {
		m := p.Messages()
		return len(m) == 1 && strings.Contains(m[0].Data, "first half\r\nsecond half")
	})
}

// TestAwaitingMarkCleared: a message whose record is durable loses its
// awaiting mark, at acceptance and when a start finds it still set (a
// crash before the mark's write reached the disk).
func TestAwaitingMarkCleared(t *testing.T) {
	p := relaytest.StartProvider(t, nil, string(NoTLS), "", "")
	p.DataErr = func() error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "not now"}
	}
	spool := filepath.Join(t.TempDir(), "spool")
	up := &Upstream{Address: p.Addr, TLS: NoTLS, Timeout: 5 * time.Second}
	r := startRelay(t, relayOpts{spoolDir: spool, upstream: up})
	c := r.login(t)
	if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	files, _ := filepath.Glob(filepath.Join(spool, "queue", "*.msg"))
	if len(files) != 1 {
		t.Fatalf("%d spool files", len(files))
	}
	ends := func(magic string) bool {
		b, _ := os.ReadFile(files[0])
		return strings.HasSuffix(string(b), magic)
	}
	if !ends(spoolMagic) {
		t.Fatal("an accepted message's spool file does not carry the archived mark")
	}
	r.Shutdown(5 * time.Second)
	f, _ := os.OpenFile(files[0], os.O_WRONLY, 0)
	fi, _ := f.Stat()
	f.WriteAt([]byte{awaitingMagic[len(awaitingMagic)-2]}, fi.Size()-2)
	f.Close()
	if !ends(awaitingMagic) {
		t.Fatal("the test did not restore the awaiting mark")
	}
	r2 := startRelay(t, relayOpts{spoolDir: spool, upstream: up, archive: r.archive})
	if len(r2.Queue()) != 1 || !ends(spoolMagic) {
		t.Errorf("after a start: %d queued, archived mark %v; want the message kept and marked", len(r2.Queue()), ends(spoolMagic))
	}
}
