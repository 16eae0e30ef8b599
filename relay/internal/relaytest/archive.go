package relaytest

import (
	"context"
	"io"
	"sync"

	"github.com/sealpost/sealpost/archive"
)

// Archive records in memory; Fail makes every write fail. Read its fields
// under Mu.
type Archive struct {
	Mu       sync.Mutex
	Messages []archive.Message
	Bodies   [][]byte
	Events   []archive.Event
	Refusals []archive.RefusalRecord
	// Activities are the changes people made (retries, drops).
	Activities []archive.Activity
	FailWith   error
	// AfterRead runs once a message's body has been read, before the
	// record is stored (or fails with FailWith).
	AfterRead func()
}

func (a *Archive) RecordMessage(ctx context.Context, m archive.Message, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	a.Mu.Lock()
	after := a.AfterRead
	a.Mu.Unlock()
	if after != nil {
		after()
	}
	a.Mu.Lock()
	defer a.Mu.Unlock()
	if a.FailWith != nil {
		return a.FailWith
	}
	if late, ok := body.(archive.DecisionsAtEnd); ok {
		m.Decisions = late.DecisionsAtEnd()
	}
	a.Messages = append(a.Messages, m)
	a.Bodies = append(a.Bodies, b)
	return nil
}

func (a *Archive) MessagesRecorded(ctx context.Context, ids []string) (map[string]bool, error) {
	a.Mu.Lock()
	defer a.Mu.Unlock()
	found := map[string]bool{}
	for _, m := range a.Messages {
		for _, id := range ids {
			if m.ID == id {
				found[id] = true
			}
		}
	}
	return found, nil
}

func (a *Archive) RecordEvent(ctx context.Context, e archive.Event) error {
	a.Mu.Lock()
	defer a.Mu.Unlock()
	if a.FailWith != nil {
		return a.FailWith
	}
	a.Events = append(a.Events, e)
	return nil
}

func (a *Archive) RecordActivity(ctx context.Context, act archive.Activity) error {
	a.Mu.Lock()
	defer a.Mu.Unlock()
	if a.FailWith != nil {
		return a.FailWith
	}
	a.Activities = append(a.Activities, act)
	return nil
}

func (a *Archive) RecordRefusal(ctx context.Context, r archive.RefusalRecord) error {
	a.Mu.Lock()
	defer a.Mu.Unlock()
	if a.FailWith != nil {
		return a.FailWith
	}
	a.Refusals = append(a.Refusals, r)
	return nil
}

// SetFailure makes every write fail with err from now on; nil ends it.
func (a *Archive) SetFailure(err error) {
	a.Mu.Lock()
	a.FailWith = err
	a.Mu.Unlock()
}

// EventKinds are the kinds of the events recorded for message id, in order.
func (a *Archive) EventKinds(id string) []archive.EventKind {
	var k []archive.EventKind
	for _, e := range a.EventsOf(id) {
		k = append(k, e.Kind)
	}
	return k
}

// EventsOf are the events recorded for message id, in order.
func (a *Archive) EventsOf(id string) []archive.Event {
	a.Mu.Lock()
	defer a.Mu.Unlock()
	var out []archive.Event
	for _, e := range a.Events {
		if e.MessageID == id {
			out = append(out, e)
		}
	}
	return out
}

// ContainsKind says whether k is among ks.
func ContainsKind(ks []archive.EventKind, k archive.EventKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}
