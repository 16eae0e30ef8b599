package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/ids"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
	"github.com/sealpost/sealpost/relay/provider"
	"github.com/sealpost/sealpost/rules"
)

const (
	testUser = relaytest.User
	testFrom = relaytest.From
	rcpt1    = "r1@client.example"
	rcpt2    = "r2@client.example"
)

// scriptedDlv stands in for the provider in queue tests: it records what
// each job handed over (the copy's body and its recipients), runs before
// ahead of each (tests block there), and answers with reply.
type scriptedDlv struct {
	mu     sync.Mutex
	sent   []sentCopy
	before func(body string)
	// reply answers for one recipient: nil is 250, else the failure.
	reply func(body, rcpt string) *provider.Outcome
}

type sentCopy struct {
	id, from, body string
	rcpts          []string
}

func (d *scriptedDlv) Deliver(ctx context.Context, j *provider.Job) []provider.Outcome {
	out := make([]provider.Outcome, len(j.Recipients))
	r, err := j.Open()
	if err != nil {
		for i, rc := range j.Recipients {
			out[i] = provider.Outcome{Recipient: rc, Err: err, Reply: err.Error()}
		}
		return out
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
	var took []string
	for i, rc := range j.Recipients {
		out[i] = provider.Outcome{Recipient: rc, Reply: "250 2.0.0 ok"}
		if reply != nil {
			if o := reply(body, rc); o != nil {
				out[i] = *o
				out[i].Recipient = rc
				continue
			}
		}
		took = append(took, rc)
	}
	d.mu.Lock()
	d.sent = append(d.sent, sentCopy{id: j.ID, from: j.From, body: body, rcpts: took})
	d.mu.Unlock()
	return out
}

func (d *scriptedDlv) Close() {}

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

var tempFailure = &provider.Outcome{Err: errors.New("451 4.3.0 try later"), Reply: "451 4.3.0 try later"}

// openTestQueue opens a queue on dir that delivers through dlv; retries
// wait an hour unless a test says retry. It is not started.
func openTestQueue(t *testing.T, dir string, dlv provider.Deliverer, arc *relaytest.Archive, workers int, consent ConsentCheck) *Queue {
	t.Helper()
	red, _ := addr.NewRedactor([]byte("test key for redaction"))
	var rec Archive
	if arc != nil {
		rec = arc
	}
	q, err := Open(Config{Dir: dir, Options: Options{Workers: workers, Lifetime: time.Hour, DelayWarning: time.Hour, RetryMin: time.Hour, RetryMax: time.Hour},
		Deliverer: dlv, Archive: rec, Login: func(string) *provider.Login { return &provider.Login{Account: testUser} },
		Hostname: "relay.test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Redact: red.Hash,
		Now: time.Now, Metrics: NewMetrics(prometheus.NewRegistry()), Consent: consent})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// newTestQueue starts a queue on a fresh spool.
func newTestQueue(t *testing.T, dlv provider.Deliverer, arc *relaytest.Archive, workers int, consent ConsentCheck) (*Queue, *spool) {
	t.Helper()
	q := openTestQueue(t, t.TempDir(), dlv, arc, workers, consent)
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Stop(5 * time.Second) })
	return q, q.spool
}

// spoolMessage commits a message to sp whose copies hold their own names as
// bodies; it is not queued yet.
func spoolMessage(t *testing.T, sp *spool, copies ...rules.Copy) *entry {
	t.Helper()
	in, err := sp.newIncoming(ids.New(time.Now()), time.Now())
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
	if err := in.Commit(Envelope{Account: testUser, Sender: testFrom, Copies: copies}, false); err != nil {
		t.Fatal(err)
	}
	in.confirm()
	return in.entry
}

// inQueue says whether message id is still in q.
func inQueue(q *Queue, id string) bool {
	for _, m := range q.List() {
		if m.ID == id {
			return true
		}
	}
	return false
}
