package queue

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
	"github.com/sealpost/sealpost/relay/provider"
	"github.com/sealpost/sealpost/rules"
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
		run          func(t *testing.T, q *Queue, sp *spool, dlv *scriptedDlv, e *entry) error
		wantSent     map[string][]string
		wantNotSent  []string
		wantDelivery bool // a Delivered event comes before the drop
	}{
		{
			name: "handed to a worker after the drop",
			run: func(t *testing.T, q *Queue, sp *spool, dlv *scriptedDlv, e *entry) error {
				// As the scheduler hands it over: in flight, not yet started.
				q.mu.Lock()
				q.entries[e.meta.ID] = e
				e.inFlight = true
				q.mu.Unlock()
				dropped := make(chan error, 1)
				go func() { _, err := q.Drop(e.meta.ID); dropped <- err }()
				testutil.WaitFor(t, "the drop", func() bool { return q.isDropped(e) })
				q.attempt(e) // the worker receives it
				return <-dropped
			},
			wantSent:    map[string][]string{},
			wantNotSent: []string{rcpt1, rcpt2},
		},
		{
			name: "waiting while every worker is busy",
			run: func(t *testing.T, q *Queue, sp *spool, dlv *scriptedDlv, e *entry) error {
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
				go func() { _, err := q.Drop(e.meta.ID); dropped <- err }()
				var err error
				select {
				case err = <-dropped:
				case <-time.After(10 * time.Second):
					close(release)
					t.Fatal("the drop waits for a delivery of another message")
				}
				close(release)
				testutil.WaitFor(t, "the busy message delivered", func() bool { return !inQueue(q, busy.meta.ID) })
				return err
			},
			wantSent:    map[string][]string{},
			wantNotSent: []string{rcpt1, rcpt2},
		},
		{
			name: "between two copies",
			run: func(t *testing.T, q *Queue, sp *spool, dlv *scriptedDlv, e *entry) error {
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
				go func() { _, err := q.Drop(e.meta.ID); dropped <- err }()
				testutil.WaitFor(t, "the drop", func() bool { return q.isDropped(e) })
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
			arc := &relaytest.Archive{}
			q, sp := newTestQueue(t, dlv, arc, 1, nil)
			e := spoolMessage(t, sp,
				rules.Copy{Name: "first", Recipients: []string{rcpt1}, Protection: record.Encrypted},
				rules.Copy{Name: "second", Recipients: []string{rcpt2}, Protection: record.Encrypted})
			if err := tt.run(t, q, sp, dlv, e); err != nil {
				t.Fatalf("drop: %v", err)
			}
			testutil.WaitFor(t, "the message out of the queue", func() bool { return !inQueue(q, e.meta.ID) })
			if got := dlv.handedOver(e.meta.ID); !reflect.DeepEqual(got, tt.wantSent) {
				t.Errorf("handed to the provider %v; want %v", got, tt.wantSent)
			}
			var kinds []archive.EventKind
			var notSent []string
			for _, ev := range arc.EventsOf(e.meta.ID) {
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
			dlv := &scriptedDlv{reply: func(string, string) *provider.Outcome {
				if n.Add(1) == 1 {
					return tempFailure
				}
				return nil
			}}
			arc := &relaytest.Archive{}
			q, sp := newTestQueue(t, dlv, arc, 1, nil)
			e := spoolMessage(t, sp, rules.Copy{Name: "a", Recipients: []string{rcpt1}, Protection: record.Encrypted})
			inSync, release := make(chan struct{}), make(chan struct{})
			var armed atomic.Bool
			armed.Store(true)
			sp.dirSync.Fsync = func(dir string) error {
				if armed.CompareAndSwap(true, false) {
					inSync <- struct{}{}
					<-release
				}
				return fsutil.SyncDir(dir)
			}
			q.add(e)
			<-inSync // the first attempt failed; its state is being saved
			dropped := make(chan error, 1)
			switch action {
			case "drop":
				go func() { _, err := q.Drop(e.meta.ID); dropped <- err }()
				testutil.WaitFor(t, "the drop", func() bool { return q.isDropped(e) })
			case "retry":
				if _, err := q.Retry(e.meta.ID); err != nil {
					t.Fatal(err)
				}
			}
			close(release)
			switch action {
			case "drop":
				if err := <-dropped; err != nil {
					t.Fatal(err)
				}
				testutil.WaitFor(t, "the message out of the queue", func() bool { return !inQueue(q, e.meta.ID) })
				if dlv.calls() != 1 || !relaytest.ContainsKind(arc.EventKinds(e.meta.ID), archive.Dropped) {
					t.Errorf("%d attempts, archived %v; want the failed one only, and the drop", dlv.calls(), arc.EventKinds(e.meta.ID))
				}
			case "retry":
				testutil.WaitFor(t, "the retry to deliver", func() bool {
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
			dlv := &scriptedDlv{reply: func(_, rcpt string) *provider.Outcome {
				if rcpt == rcpt2 {
					return tempFailure
				}
				return nil
			}}
			arc := &relaytest.Archive{FailWith: errFull}
			q, sp := newTestQueue(t, dlv, arc, 1, nil)
			e := spoolMessage(t, sp, rules.Copy{Name: "a", Recipients: []string{rcpt1, rcpt2}, Protection: record.Encrypted})
			id := e.meta.ID
			q.add(e)
			testutil.WaitFor(t, "the first attempt back in the queue", func() bool { l := q.List(); return len(l) == 1 && l[0].Attempts == 1 })
			if !tt.failingAtDrop {
				arc.SetFailure(nil)
			}
			_, err := q.Drop(id)
			if tt.failingAtDrop {
				if err == nil || !errors.Is(err, errFull) || !strings.Contains(err.Error(), "will not be sent") {
					t.Fatalf("drop with the archive failing: %v", err)
				}
				if l := q.List(); len(l) != 1 || !l[0].Dropped {
					t.Fatalf("queue %+v; want the message kept, marked dropped", l)
				}
				onDisk, err := loadEntry(e.path)
				if err != nil || !onDisk.dropped {
					t.Fatalf("on disk the message is not marked dropped: %v", err)
				}
				// Its next turn, with the archive still failing: not sent.
				if _, err := q.Retry(id); err != nil {
					t.Fatal(err)
				}
				testutil.WaitFor(t, "the next turn", func() bool {
					l := q.List()
					return len(l) == 1 && l[0].NextAttempt.After(time.Now().Add(30*time.Minute))
				})
				arc.SetFailure(nil)
				if _, err := q.Retry(id); err != nil {
					t.Fatal(err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, "the message out of the queue", func() bool { return !inQueue(q, id) })
			if dlv.calls() != 1 {
				t.Errorf("%d attempts; the dropped message was tried again", dlv.calls())
			}
			var got []string
			for _, ev := range arc.EventsOf(id) {
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
