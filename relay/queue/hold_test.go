package queue

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/ids"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
	"github.com/sealpost/sealpost/relay/provider"
	"github.com/sealpost/sealpost/rules"
)

// fakeClock is the queue's clock in these tests: the scheduler is poked
// after it moves, as clockRecheck would wake it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// Monday 7 December 2026, 09:00 in New York: the opening held mail waits for.
var opening = time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)

func startClockedQueue(t *testing.T, dir string, dlv provider.Deliverer, arc *relaytest.Archive, clock *fakeClock, lifetime time.Duration) *Queue {
	t.Helper()
	red, _ := addr.NewRedactor([]byte("test key for redaction"))
	q, err := Open(Config{Dir: dir, Options: Options{Workers: 2, Lifetime: lifetime, DelayWarning: lifetime, RetryMin: time.Hour, RetryMax: time.Hour},
		Deliverer: dlv, Archive: arc, Login: func(string) *provider.Login { return &provider.Login{Account: testUser} },
		Hostname: "relay.test", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Redact: red.Hash,
		Now: clock.Now, Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	return q
}

// spoolHeld commits and enqueues a message received at received whose
// file "sent" goes to a colleague at once and to a client held until
// opening, as the rules split it.
func spoolHeld(t *testing.T, q *Queue, received time.Time) string {
	t.Helper()
	in, err := q.NewIncoming(ids.New(received), received)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := in.Create("sent")
	io.WriteString(w, "sent")
	w.Close()
	copies := []rules.Copy{
		{Name: "sent", Recipients: []string{"colleague@practice.example"}, Protection: record.Internal},
		{Name: "sent", Recipients: []string{rcpt1}, Protection: record.Consented, HoldUntil: opening},
	}
	if err := in.Commit(Envelope{Account: testUser, Sender: testFrom, Copies: copies}, false); err != nil {
		t.Fatal(err)
	}
	q.Enqueue(in)
	return in.id
}

func delivered(dlv *scriptedDlv, id string) []string { return dlv.handedOver(id)["sent"] }

func TestHeldUntilOpening(t *testing.T) {
	dir := t.TempDir()
	dlv := &scriptedDlv{}
	arc := &relaytest.Archive{}
	friday := opening.Add(-62 * time.Hour)
	clock := &fakeClock{now: friday}
	q := startClockedQueue(t, dir, dlv, arc, clock, time.Hour)
	id := spoolHeld(t, q, friday)

	testutil.WaitFor(t, "the colleague's copy", func() bool { return slices.Equal(delivered(dlv, id), []string{"colleague@practice.example"}) })
	testutil.WaitFor(t, "the hold recorded", func() bool { return relaytest.ContainsKind(arc.EventKinds(id), record.EventHeld) })
	// The colleague's delivery is recorded before the entry's next attempt
	// moves to the opening: the listing is waited for, not read at once.
	testutil.WaitFor(t, "the queue listing the message held until "+opening.String(), func() bool {
		list := q.List()
		return len(list) == 1 && list[0].HeldUntil.Equal(opening) && list[0].NextAttempt.Equal(opening)
	})
	// Held mail is not late: the oldest wait begins at the release.
	if _, oldest := q.stats(); !oldest.Equal(opening) {
		t.Errorf("the oldest message waits since %s, want %s", oldest, opening)
	}
	if n := q.heldCount(); n != 1 {
		t.Errorf("%d held messages counted, want 1", n)
	}

	// A second before the opening nothing moves; a restart keeps the hold.
	clock.set(opening.Add(-time.Second))
	q.poke()
	q.Stop(5 * time.Second)
	q = startClockedQueue(t, dir, dlv, arc, clock, time.Hour)
	defer func() { q.Stop(5 * time.Second) }()
	if got := delivered(dlv, id); len(got) != 1 {
		t.Fatalf("handed over before the opening: %v", got)
	}

	clock.set(opening)
	q.poke()
	testutil.WaitFor(t, "the client's copy at the opening", func() bool { return len(delivered(dlv, id)) == 2 })
	testutil.WaitFor(t, "the message leaves the queue", func() bool { return !inQueue(q, id) })
	var kinds []string
	for _, e := range arc.EventsOf(id) {
		kinds = append(kinds, fmt.Sprintf("%s %v %s", e.Kind, e.Recipients, e.Time.UTC().Format(time.RFC3339)))
	}
	want := []string{
		"held [r1@client.example] " + friday.Format(time.RFC3339),
		"delivered [colleague@practice.example] " + friday.Format(time.RFC3339),
		"released [r1@client.example] " + opening.Format(time.RFC3339),
		"delivered [r1@client.example] " + opening.Format(time.RFC3339),
	}
	if !slices.Equal(kinds, want) {
		t.Errorf("archive events:\n%v\nwant\n%v", kinds, want)
	}
}

// Many messages held until one opening go out releaseSpacing apart, in
// the order they came; a message held over a weekend is not given up
// for the hours it waited.
func TestHeldReleaseSpread(t *testing.T) {
	dlv := &scriptedDlv{}
	arc := &relaytest.Archive{}
	clock := &fakeClock{now: opening.Add(-10 * time.Hour)}
	q := startClockedQueue(t, t.TempDir(), dlv, arc, clock, time.Hour)
	defer q.Stop(5 * time.Second)
	var msgs []string
	for i := range 3 {
		msgs = append(msgs, spoolHeld(t, q, clock.Now().Add(time.Duration(i-3)*time.Second)))
	}
	testutil.WaitFor(t, "the colleagues' copies", func() bool { return dlv.calls() == 3 })
	for i, at := range []time.Duration{0, releaseSpacing, 2 * releaseSpacing} {
		clock.set(opening.Add(at))
		q.poke()
		testutil.WaitFor(t, fmt.Sprintf("message %d released at +%s", i, at), func() bool { return len(delivered(dlv, msgs[i])) == 2 })
		for _, later := range msgs[i+1:] {
			if len(delivered(dlv, later)) != 1 {
				t.Fatalf("a later message went out at +%s", at)
			}
		}
	}
	for _, id := range msgs {
		if slices.Contains(arc.EventKinds(id), archive.Bounced) {
			t.Errorf("%s bounced: the lifetime counted the hold", id)
		}
	}
}
