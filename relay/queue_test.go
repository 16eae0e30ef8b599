package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/ids"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

func TestUpstreamDelivery(t *testing.T) {
	for _, mode := range []UpstreamTLS{StartTLS, ImplicitTLS} {
		t.Run(string(mode), func(t *testing.T) {
			pki := newPKI(t)
			p := startProvider(t, pki, mode, "therapist@provider.example", "upstream-secret")
			r := startRelay(t, relayOpts{upstream: p.upstream(pki, mode), upstreamUser: "therapist@provider.example", upstreamPass: "upstream-secret"})
			c := r.login(t)
			for i := 0; i < 3; i++ {
				if err := send(c, testFrom, []string{"a@practice.example", "b@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "three messages at the provider", func() bool { return len(p.messages()) == 3 })
			m := p.messages()[0]
			if m.from != testFrom || strings.Join(m.to, ",") != "a@practice.example,b@practice.example" {
				t.Errorf("provider got MAIL FROM %q RCPT %v", m.from, m.to)
			}
			p.mu.Lock()
			logins := p.logins
			p.mu.Unlock()
			if logins < 1 || logins > 3 {
				t.Errorf("%d logins at the provider", logins)
			}
			waitFor(t, "empty queue", func() bool { return len(r.Queue()) == 0 })
		})
	}
}

// TestProviderReplies: 5xx is final (bounce to the sender), 4xx and network
// trouble are retried, and only what failed is retried.
func TestProviderReplies(t *testing.T) {
	pki := newPKI(t)
	p := startProvider(t, pki, StartTLS, "", "")
	var tempFailures atomic.Int32
	p.rcptErr = func(rcpt string) error {
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
	r := startRelay(t, relayOpts{upstream: p.upstream(pki, StartTLS)})
	c := r.login(t)
	rcpts := []string{"ok@practice.example", "gone@practice.example", "busy@practice.example"}
	if err := send(c, testFrom, rcpts, testMessage(testFrom, "ok@practice.example", "report", "x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queue to drain", func() bool { return len(r.Queue()) == 0 && len(p.messages()) >= 3 })
	var toOK, toBusy, bounces int
	var bounce providerMsg
	for _, m := range p.messages() {
		switch {
		case m.from == "" && len(m.to) == 1 && m.to[0] == testFrom:
			bounces++
			bounce = m
		default:
			for _, to := range m.to {
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
		if !strings.Contains(bounce.data, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce.data)
		}
	}
	if strings.Contains(bounce.data, "busy@practice.example") {
		t.Error("bounce names a recipient that was delivered")
	}
	if logs := r.logs.String(); !strings.Contains(logs, "try later") || strings.Contains(logs, "busy@practice.example") {
		t.Errorf("the log should carry the provider's reply without the address it names:\n%s", logs)
	}
	id := r.archive.messages[0].ID
	kinds := r.archive.eventKinds(id)
	if !containsKind(kinds, archive.Delivered) || !containsKind(kinds, archive.Deferred) || !containsKind(kinds, archive.Bounced) {
		t.Errorf("archived outcomes %v; want delivered, deferred and bounced", kinds)
	}
}

func containsKind(ks []archive.EventKind, k archive.EventKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// TestNeverInClear: a provider that stops offering STARTTLS, or whose
// certificate does not verify, gets nothing; the message waits.
func TestNeverInClear(t *testing.T) {
	pki := newPKI(t)
	tests := []struct {
		name  string
		setup func(t *testing.T) *Upstream
	}{
		{"no STARTTLS offered", func(t *testing.T) *Upstream {
			p := startProvider(t, pki, NoTLS, "", "")
			return p.upstream(pki, StartTLS)
		}},
		{"certificate from an unknown CA", func(t *testing.T) *Upstream {
			p := startProvider(t, newPKI(t), StartTLS, "", "")
			return p.upstream(pki, StartTLS)
		}},
		{"certificate for another name", func(t *testing.T) *Upstream {
			p := startProvider(t, pki, ImplicitTLS, "", "")
			u := p.upstream(pki, ImplicitTLS)
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
			waitFor(t, "two failed attempts", func() bool {
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
	pki := newPKI(t)
	conf, _ := tlsconf.ClientTLS("localhost", pki.caFile)
	r := startRelay(t, relayOpts{
		upstream: &Upstream{Address: dead, TLS: StartTLS, TLSConfig: conf, Timeout: time.Second},
		queue:    QueueOptions{Workers: 1, Lifetime: 400 * time.Millisecond, DelayWarning: 100 * time.Millisecond, RetryMin: 20 * time.Millisecond, RetryMax: 40 * time.Millisecond},
	})
	c := r.login(t)
	if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
		t.Fatal(err)
	}
	id := r.archive.messages[0].ID
	waitFor(t, "a bounce", func() bool { return containsKind(r.archive.eventKinds(id), archive.Bounced) })
	kinds := r.archive.eventKinds(id)
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
	waitFor(t, "the queue to empty", func() bool {
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
	pki := newPKI(t)
	p := startProvider(t, pki, StartTLS, "", "")
	var down atomic.Bool
	down.Store(true)
	p.dataErr = func() error {
		if down.Load() {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "down for maintenance"}
		}
		return nil
	}
	spool := filepath.Join(t.TempDir(), "spool")
	r := startRelay(t, relayOpts{upstream: p.upstream(pki, StartTLS), spoolDir: spool})
	c := r.login(t)
	for i := 0; i < 5; i++ {
		if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	r.Shutdown(5 * time.Second)
	// A crash mid-DATA leaves a file without its trailer.
	half := filepath.Join(spool, queueDir, "0000000000000half.msg")
	os.WriteFile(half, []byte("From: x\r\n"), 0o600)

	down.Store(false)
	r2 := startRelay(t, relayOpts{upstream: p.upstream(pki, StartTLS), spoolDir: spool})
	waitFor(t, "five messages at the provider", func() bool { return len(p.messages()) == 5 })
	waitFor(t, "empty queue", func() bool { return len(r2.Queue()) == 0 })
	if _, err := os.Stat(half); !os.IsNotExist(err) {
		t.Fatal("half-received message was not cleaned up")
	}
	if k := r2.archive.eventKinds("0000000000000half"); len(k) != 1 || k[0] != archive.Aborted {
		t.Errorf("the cut-off message is not marked aborted in the archive: %v", k)
	}
}

func TestSpoolIsExclusive(t *testing.T) {
	dir := t.TempDir()
	s, _, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if _, _, err := openSpool(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open of the spool: %v; want 'in use'", err)
	}
}

func TestQueueRetryAndDrop(t *testing.T) {
	pki := newPKI(t)
	p := startProvider(t, pki, StartTLS, "", "")
	var down atomic.Bool
	down.Store(true)
	p.dataErr = func() error {
		if down.Load() {
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "full"}
		}
		return nil
	}
	r := startRelay(t, relayOpts{upstream: p.upstream(pki, StartTLS),
		queue: QueueOptions{Workers: 1, Lifetime: time.Hour, DelayWarning: time.Hour, RetryMin: time.Hour, RetryMax: time.Hour}})
	c := r.login(t)
	for i := 0; i < 2; i++ {
		if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both tried once", func() bool {
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
	waitFor(t, "the retried message delivered", func() bool { return len(p.messages()) == 1 && len(r.Queue()) == 0 })
	if !containsKind(r.archive.eventKinds(q[0].ID), archive.Dropped) {
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
	pki := newPKI(t)
	p := startProvider(t, pki, StartTLS, "", "")
	inAttempt, release := make(chan struct{}, 1), make(chan struct{})
	var attempts atomic.Int32
	p.dataErr = func() error {
		if attempts.Add(1) == 1 {
			inAttempt <- struct{}{}
			<-release
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "full"}
		}
		return nil
	}
	r := startRelay(t, relayOpts{upstream: p.upstream(pki, StartTLS),
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
	waitFor(t, "the second attempt to deliver", func() bool { return len(p.messages()) == 1 && len(r.Queue()) == 0 })
}

// TestShutdownFinishesSessions: SIGTERM lets a message being transferred
// finish (and be answered 250), takes no new connections, and keeps what it
// accepted for the next start.
func TestShutdownFinishesSessions(t *testing.T) {
	pki := newPKI(t)
	p := startProvider(t, pki, StartTLS, "", "")
	var down atomic.Bool
	down.Store(true)
	p.dataErr = func() error {
		if down.Load() {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}
		}
		return nil
	}
	spool := filepath.Join(t.TempDir(), "spool")
	r := startRelay(t, relayOpts{upstream: p.upstream(pki, StartTLS), spoolDir: spool,
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
	waitFor(t, "the listeners to close", func() bool {
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
	r2 := startRelay(t, relayOpts{upstream: p.upstream(pki, StartTLS), spoolDir: spool})
	q := r2.Queue()
	if len(q) != 1 {
		t.Fatalf("after the restart the queue holds %d messages, want 1", len(q))
	}
	if _, err := r2.Retry(q[0].ID); err != nil { // it was tried once before the stop; no need to wait an hour
		t.Fatal(err)
	}
	waitFor(t, "the message at the provider after the restart", func() bool {
		m := p.messages()
		return len(m) == 1 && strings.Contains(m[0].data, "first half\r\nsecond half")
	})
}

// TestCrashWhileArchiving: the spool file and the archive record of a
// message are made durable at the same time; a crash between the two can
// leave a committed file whose record never made it. Its sender was never
// told 250, so the next start removes it (and says so in the archive); a
// file whose record is there is delivered.
func TestCrashWhileArchiving(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "spool")
	s, _, err := openSpool(spool)
	if err != nil {
		t.Fatal(err)
	}
	recorded, unrecorded := ids.New(time.Now()), ids.New(time.Now())
	for _, id := range []string{recorded, unrecorded} {
		in, err := s.newIncoming(id)
		if err != nil {
			t.Fatal(err)
		}
		w, _ := in.Create("plain")
		io.WriteString(w, testMessage(testFrom, "a@practice.example", "notes "+id, "x"))
		w.Close()
		e := newEntry(s, id, testUser, testFrom, time.Now(), []rules.Copy{{Name: "plain", Recipients: []string{"a@practice.example"}, Protection: record.Internal}}, false)
		if err := in.commit(e, true); err != nil {
			t.Fatal(err)
		}
		in.f.Close() // the crash: never confirmed
	}
	s.close()

	arch := &memArchive{messages: []archive.Message{{ID: recorded}}}
	r := startRelay(t, relayOpts{spoolDir: spool, archive: arch})
	waitFor(t, "the recorded message delivered", func() bool { return len(outboxFiles(t, r.dataDir)) == 1 && len(r.Queue()) == 0 })
	if got := outboxFiles(t, r.dataDir)[0]; !strings.Contains(got, "notes "+recorded) {
		t.Errorf("delivered the wrong message:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(spool, queueDir, unrecorded+msgSuffix)); !os.IsNotExist(err) {
		t.Error("the message without its record is still spooled")
	}
	if k := arch.eventKinds(unrecorded); len(k) != 1 || k[0] != archive.Aborted {
		t.Errorf("the message without its record is not marked aborted in the archive: %v", k)
	}
}

// TestAwaitingMarkCleared: a message whose record is durable loses its
// awaiting mark, at acceptance and when a start finds it still set (a
// crash before the mark's write reached the disk).
func TestAwaitingMarkCleared(t *testing.T) {
	p := startProvider(t, nil, NoTLS, "", "")
	p.dataErr = func() error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "not now"}
	}
	spool := filepath.Join(t.TempDir(), "spool")
	up := &Upstream{Address: p.addr, TLS: NoTLS, Timeout: 5 * time.Second}
	r := startRelay(t, relayOpts{spoolDir: spool, upstream: up})
	c := r.login(t)
	if err := send(c, testFrom, []string{"a@practice.example"}, testMessage(testFrom, "a@practice.example", "s", "x")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	files, _ := filepath.Glob(filepath.Join(spool, queueDir, "*"+msgSuffix))
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

const (
	rcpt1 = "r1@client.example"
	rcpt2 = "r2@client.example"
)

// TestDropStopsDelivery: once drop has returned, nothing more of the
// message is handed to the provider, wherever the drop found it; the drop
// is archived naming only those who did not get it, and the message
// leaves the spool.
func TestDropStopsDelivery(t *testing.T) {
	tests := []struct {
		name string
		// run queues e (whose copies are "first" to rcpt1 and "second" to
		// rcpt2) and drops it at its moment.
		run          func(t *testing.T, q *queue, sp *spool, dlv *scriptedDlv, e *entry) error
		wantSent     map[string][]string
		wantNotSent  []string
		wantDelivery bool // a Delivered event comes before the drop
	}{
		{
			name: "handed to a worker after the drop",
			run: func(t *testing.T, q *queue, sp *spool, dlv *scriptedDlv, e *entry) error {
				// As the scheduler hands it over: in flight, not yet started.
				q.mu.Lock()
				q.entries[e.meta.ID] = e
				e.inFlight = true
				q.mu.Unlock()
				dropped := make(chan error, 1)
				go func() { _, err := q.drop(e.meta.ID); dropped <- err }()
				waitFor(t, "the drop", func() bool { return q.isDropped(e) })
				q.attempt(e) // the worker receives it
				return <-dropped
			},
			wantSent:    map[string][]string{},
			wantNotSent: []string{rcpt1, rcpt2},
		},
		{
			name: "waiting while every worker is busy",
			run: func(t *testing.T, q *queue, sp *spool, dlv *scriptedDlv, e *entry) error {
				started, release := make(chan struct{}), make(chan struct{})
				dlv.before = func(body string) {
					if body == "busy" {
						started <- struct{}{}
						<-release
					}
				}
				// Due after the busy one: the worker takes that, and the
				// message waits for it to be free.
				busy := spoolMessage(t, sp, rules.Copy{Name: "busy", Recipients: []string{"other@client.example"}, Protection: record.Encrypted})
				busy.meta.Received = e.meta.Received.Add(-time.Millisecond)
				busy.state.NextAttempt = busy.meta.Received
				q.add(busy)
				q.add(e)
				<-started
				dropped := make(chan error, 1)
				go func() { _, err := q.drop(e.meta.ID); dropped <- err }()
				var err error
				select {
				case err = <-dropped:
				case <-time.After(10 * time.Second):
					close(release)
					t.Fatal("the drop waits for a delivery of another message")
				}
				close(release)
				waitFor(t, "the busy message delivered", func() bool { return !inQueue(q, busy.meta.ID) })
				return err
			},
			wantSent:    map[string][]string{},
			wantNotSent: []string{rcpt1, rcpt2},
		},
		{
			name: "between two copies",
			run: func(t *testing.T, q *queue, sp *spool, dlv *scriptedDlv, e *entry) error {
				started, release := make(chan struct{}), make(chan struct{})
				dlv.before = func(body string) {
					if body == "first" {
						started <- struct{}{}
						<-release
					}
				}
				q.add(e)
				<-started
				dropped := make(chan error, 1)
				go func() { _, err := q.drop(e.meta.ID); dropped <- err }()
				waitFor(t, "the drop", func() bool { return q.isDropped(e) })
				close(release)
				return <-dropped
			},
			wantSent:     map[string][]string{"first": {rcpt1}},
			wantNotSent:  []string{rcpt2},
			wantDelivery: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dlv := &scriptedDlv{}
			arc := &memArchive{}
			q, sp := newTestQueue(t, dlv, arc, 1, nil)
			e := spoolMessage(t, sp,
				rules.Copy{Name: "first", Recipients: []string{rcpt1}, Protection: record.Encrypted},
				rules.Copy{Name: "second", Recipients: []string{rcpt2}, Protection: record.Encrypted})
			if err := tt.run(t, q, sp, dlv, e); err != nil {
				t.Fatalf("drop: %v", err)
			}
			waitFor(t, "the message out of the queue", func() bool { return !inQueue(q, e.meta.ID) })
			if got := dlv.handedOver(e.meta.ID); !reflect.DeepEqual(got, tt.wantSent) {
				t.Errorf("handed to the provider %v; want %v", got, tt.wantSent)
			}
			var kinds []archive.EventKind
			var notSent []string
			for _, ev := range arc.eventsOf(e.meta.ID) {
				kinds = append(kinds, ev.Kind)
				if ev.Kind == archive.Dropped {
					notSent = append(notSent, ev.Recipients...)
				}
			}
			want := []archive.EventKind{archive.Dropped}
			if tt.wantDelivery {
				want = []archive.EventKind{archive.Delivered, archive.Dropped}
			}
			if !reflect.DeepEqual(kinds, want) || !reflect.DeepEqual(notSent, tt.wantNotSent) {
				t.Errorf("archived %v, the drop naming %v; want %v naming %v", kinds, notSent, want, tt.wantNotSent)
			}
			if _, err := os.Stat(e.path); !os.IsNotExist(err) {
				t.Error("the dropped message is still spooled")
			}
		})
	}
}

// TestDropOrRetryWhileStateIsSaved: a drop or retry that arrives while
// the attempt that just ended saves its state is not lost.
func TestDropOrRetryWhileStateIsSaved(t *testing.T) {
	for _, action := range []string{"drop", "retry"} {
		t.Run(action, func(t *testing.T) {
			var n atomic.Int32
			dlv := &scriptedDlv{reply: func(string, string) *outcome {
				if n.Add(1) == 1 {
					return tempFailure
				}
				return nil
			}}
			arc := &memArchive{}
			q, sp := newTestQueue(t, dlv, arc, 1, nil)
			e := spoolMessage(t, sp, rules.Copy{Name: "a", Recipients: []string{rcpt1}, Protection: record.Encrypted})
			inSync, release := make(chan struct{}), make(chan struct{})
			var armed atomic.Bool
			armed.Store(true)
			sp.dirSync.fsync = func(dir string) error {
				if armed.CompareAndSwap(true, false) {
					inSync <- struct{}{}
					<-release
				}
				return syncDir(dir)
			}
			q.add(e)
			<-inSync // the first attempt failed; its state is being saved
			dropped := make(chan error, 1)
			switch action {
			case "drop":
				go func() { _, err := q.drop(e.meta.ID); dropped <- err }()
				waitFor(t, "the drop", func() bool { return q.isDropped(e) })
			case "retry":
				if _, err := q.retry(e.meta.ID); err != nil {
					t.Fatal(err)
				}
			}
			close(release)
			switch action {
			case "drop":
				if err := <-dropped; err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the message out of the queue", func() bool { return !inQueue(q, e.meta.ID) })
				if dlv.calls() != 1 || !containsKind(arc.eventKinds(e.meta.ID), archive.Dropped) {
					t.Errorf("%d attempts, archived %v; want the failed one only, and the drop", dlv.calls(), arc.eventKinds(e.meta.ID))
				}
			case "retry":
				waitFor(t, "the retry to deliver", func() bool {
					return reflect.DeepEqual(dlv.handedOver(e.meta.ID), map[string][]string{"a": {rcpt1}}) && !inQueue(q, e.meta.ID)
				})
			}
		})
	}
}

// TestDropRecordsOutcomesFirst: a drop writes the outcomes the archive
// could not take earlier, then the drop, and only then removes the
// message; while the archive fails, the message stays, marked dropped
// (also on disk), and is never sent again.
func TestDropRecordsOutcomesFirst(t *testing.T) {
	errFull := errors.New("archive disk full")
	tests := []struct {
		name          string
		failingAtDrop bool
	}{
		{"archive back before the drop", false},
		{"archive still failing at the drop", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dlv := &scriptedDlv{reply: func(_, rcpt string) *outcome {
				if rcpt == rcpt2 {
					return tempFailure
				}
				return nil
			}}
			arc := &memArchive{failWith: errFull}
			q, sp := newTestQueue(t, dlv, arc, 1, nil)
			e := spoolMessage(t, sp, rules.Copy{Name: "a", Recipients: []string{rcpt1, rcpt2}, Protection: record.Encrypted})
			id := e.meta.ID
			q.add(e)
			waitFor(t, "the first attempt back in the queue", func() bool { l := q.list(); return len(l) == 1 && l[0].Attempts == 1 })
			if !tt.failingAtDrop {
				arc.setFailure(nil)
			}
			_, err := q.drop(id)
			if tt.failingAtDrop {
				if err == nil || !errors.Is(err, errFull) || !strings.Contains(err.Error(), "will not be sent") {
					t.Fatalf("drop with the archive failing: %v", err)
				}
				if l := q.list(); len(l) != 1 || !l[0].Dropped {
					t.Fatalf("queue %+v; want the message kept, marked dropped", l)
				}
				onDisk, err := loadEntry(e.path)
				if err != nil || !onDisk.dropped {
					t.Fatalf("on disk the message is not marked dropped: %v", err)
				}
				// Its next turn, with the archive still failing: not sent.
				if _, err := q.retry(id); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the next turn", func() bool {
					l := q.list()
					return len(l) == 1 && l[0].NextAttempt.After(time.Now().Add(30*time.Minute))
				})
				arc.setFailure(nil)
				if _, err := q.retry(id); err != nil {
					t.Fatal(err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the message out of the queue", func() bool { return !inQueue(q, id) })
			if dlv.calls() != 1 {
				t.Errorf("%d attempts; the dropped message was tried again", dlv.calls())
			}
			var got []string
			for _, ev := range arc.eventsOf(id) {
				got = append(got, fmt.Sprint(ev.Kind, ev.Recipients))
			}
			want := []string{"delivered[" + rcpt1 + "]", "deferred[" + rcpt2 + "]", "dropped[" + rcpt2 + "]"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("archived %v; want %v", got, want)
			}
			if _, err := os.Stat(e.path); !os.IsNotExist(err) {
				t.Error("the dropped message is still spooled")
			}
		})
	}
}

// TestConsentCheckedBeforeSendingInClear: a copy that goes out in clear
// on consent is sent only to those whose consent still stands when it is
// handed to the provider; the others fail with the reason (the sender is
// told, the archive records it). When consent cannot be checked, the copy
// waits. Encrypted and internal copies are not checked.
func TestConsentCheckedBeforeSendingInClear(t *testing.T) {
	const (
		client    = "client@client.example"
		colleague = "colleague@practice.example"
		keyHolder = "keyholder@client.example"
		other     = "other@practice.example"
	)
	tests := []struct {
		name        string
		withdrawn   map[string]string
		err         error
		wantSent    map[string][]string
		wantFailed  string // recipient told about in a failure notice
		wantPending int
	}{
		{name: "consent still active",
			wantSent: map[string][]string{"clear": {client, colleague}, "enc": {keyHolder}, "own": {other}}},
		{name: "consent withdrawn", withdrawn: map[string]string{client: "revoked on 2026-03-02"},
			wantSent: map[string][]string{"clear": {colleague}, "enc": {keyHolder}, "own": {other}}, wantFailed: client},
		{name: "registry unreadable", err: fmt.Errorf("consent registry: %w", rules.ErrUnavailable),
			wantSent: map[string][]string{"enc": {keyHolder}, "own": {other}}, wantPending: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var asked [][]string
			check := func(ctx context.Context, rcpts []string, now time.Time) (map[string]string, error) {
				mu.Lock()
				asked = append(asked, append([]string(nil), rcpts...))
				mu.Unlock()
				return tt.withdrawn, tt.err
			}
			dlv := &scriptedDlv{}
			arc := &memArchive{}
			q, sp := newTestQueue(t, dlv, arc, 1, check)
			e := spoolMessage(t, sp,
				rules.Copy{Name: "clear", Recipients: []string{client, colleague}, Protection: record.Consented},
				rules.Copy{Name: "enc", Recipients: []string{keyHolder}, Protection: record.Encrypted},
				rules.Copy{Name: "own", Recipients: []string{other}, Protection: record.Internal})
			id := e.meta.ID
			q.add(e)
			if tt.wantPending > 0 {
				waitFor(t, "the attempt to end", func() bool { l := q.list(); return len(l) == 1 && l[0].Attempts == 1 })
				l := q.list()[0]
				if l.Pending != tt.wantPending || !strings.Contains(l.LastError, "consent registry") {
					t.Errorf("queued %+v; want %d recipients waiting for the consent registry", l, tt.wantPending)
				}
				if !containsKind(arc.eventKinds(id), archive.Deferred) {
					t.Errorf("archived %v; want the deferral", arc.eventKinds(id))
				}
			} else {
				waitFor(t, "the queue to empty", func() bool { return len(q.list()) == 0 })
			}
			if got := dlv.handedOver(id); !reflect.DeepEqual(got, tt.wantSent) {
				t.Errorf("handed to the provider %v; want %v", got, tt.wantSent)
			}
			mu.Lock()
			if want := [][]string{{client, colleague}}; !reflect.DeepEqual(asked, want) {
				t.Errorf("consent asked about %v; want %v (the clear copy only)", asked, want)
			}
			mu.Unlock()
			var notices []string
			dlv.mu.Lock()
			for _, s := range dlv.sent {
				if strings.Contains(s.body, "multipart/report") {
					notices = append(notices, s.body)
				}
			}
			dlv.mu.Unlock()
			if tt.wantFailed == "" {
				if len(notices) > 0 {
					t.Errorf("unexpected failure notice:\n%s", notices[0])
				}
				return
			}
			if len(notices) != 1 {
				t.Fatalf("%d failure notices; want 1", len(notices))
			}
			for _, want := range []string{"Final-Recipient: rfc822; " + tt.wantFailed, "Status: 5.7.1", "revoked on 2026-03-02", "ask the client to consent"} {
				if !strings.Contains(strings.ReplaceAll(notices[0], "=\r\n", ""), want) {
					t.Errorf("failure notice lacks %q:\n%s", want, notices[0])
				}
			}
			var bounced []archive.Event
			for _, ev := range arc.eventsOf(id) {
				if ev.Kind == archive.Bounced {
					bounced = append(bounced, ev)
				}
			}
			if len(bounced) != 1 || !reflect.DeepEqual(bounced[0].Recipients, []string{tt.wantFailed}) || !strings.HasPrefix(bounced[0].Reply, consentWithdrawnPrefix) {
				t.Errorf("archived failures %+v; want %s, withdrawn consent", bounced, tt.wantFailed)
			}
		})
	}
}

// TestOfflineDropRecordsFirst: `sealpost queue drop` while no relay runs
// archives the outcomes the archive lacked, then the drop, and removes the
// message only after that; if the archive cannot take them, nothing is
// removed.
func TestOfflineDropRecordsFirst(t *testing.T) {
	dir := t.TempDir()
	sp, _, err := openSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := spoolMessage(t, sp, rules.Copy{Name: "a", Recipients: []string{rcpt1, rcpt2}, Protection: record.Encrypted})
	id := e.meta.ID
	// rcpt1 got it while the archive was down: that outcome waits in the state.
	e.setStatus(rcpt1, rcptDelivered, "250 ok", time.Now())
	e.state.Unrecorded = []archive.Event{{MessageID: id, Time: time.Now(), Kind: archive.Delivered, Recipients: []string{rcpt1}, Reply: "250 ok"}}
	if err := e.saveState(); err != nil {
		t.Fatal(err)
	}
	sp.close()

	oq, err := OpenOfflineQueue(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer oq.Close()
	if _, err := oq.Drop(id, func([]archive.Event) error { return errors.New("archive disk full") }); err == nil || !strings.Contains(err.Error(), "not dropped") {
		t.Fatalf("drop with the archive failing: %v", err)
	}
	if l := oq.List(); len(l) != 1 {
		t.Fatalf("queue %+v; the message must stay while the drop is not recorded", l)
	}
	var recorded []string
	if _, err := oq.Drop(id, func(evs []archive.Event) error {
		for _, ev := range evs {
			recorded = append(recorded, fmt.Sprint(ev.Kind, ev.Recipients))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(recorded, " "), fmt.Sprint(archive.Delivered, []string{rcpt1})+" "+fmt.Sprint(archive.Dropped, []string{rcpt2}); got != want {
		t.Errorf("recorded %s, want %s", got, want)
	}
	if _, err := os.Stat(e.path); !os.IsNotExist(err) {
		t.Errorf("the dropped message is still in the spool: %v", err)
	}
}
