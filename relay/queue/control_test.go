package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
	"github.com/sealpost/sealpost/relay/provider"
	"github.com/sealpost/sealpost/rules"
)

// TestControlRecordsWhoActed: a retry or drop asked for on the control
// socket is an activity record written by the relay (who ran the command,
// what, which message, "command on the server"), and one that found no
// message is none.
func TestControlRecordsWhoActed(t *testing.T) {
	dlv := &scriptedDlv{reply: func(_, _ string) *provider.Outcome { return tempFailure }}
	arc := &relaytest.Archive{}
	q, sp := newTestQueue(t, dlv, arc, 1, nil)
	e := spoolMessage(t, sp, rules.Copy{Name: "a", Recipients: []string{rcpt1}, Protection: record.Encrypted})
	id := e.meta.ID
	q.add(e)
	testutil.WaitFor(t, "the first attempt back in the queue", func() bool { l := q.List(); return len(l) == 1 && l[0].Attempts == 1 })

	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	sock := filepath.Join(dir, "control.sock")
	if err := q.ServeControl(ctx, sock, nil); err != nil {
		t.Fatal(err)
	}
	ctl, err := DialControl(sock)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		act    func(id, who string) (string, error)
		id     string
		who    string
		want   string // the activity's what; "" for none
		wantID string
	}{
		{"retry", ctl.Retry, id[:8], "alice", "queue-retry", id},
		{"retry of no message", ctl.Retry, "ffffffffff", "alice", "", ""},
		{"drop", ctl.Drop, id, "bob, as Dr. Berg", "queue-drop", id},
		{"drop again", ctl.Drop, id, "bob", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arc.Mu.Lock()
			before := len(arc.Activities)
			arc.Mu.Unlock()
			got, err := tt.act(tt.id, tt.who)
			arc.Mu.Lock()
			defer arc.Mu.Unlock()
			added := arc.Activities[before:]
			if tt.want == "" {
				if !errors.Is(err, errNoSuchMessage) || len(added) != 0 {
					t.Fatalf("err %v, activity %+v; want no such message and no record", err, added)
				}
				return
			}
			if err != nil || got != tt.wantID {
				t.Fatalf("%s: %q, %v", tt.name, got, err)
			}
			if len(added) != 1 {
				t.Fatalf("activity records %+v; want one", added)
			}
			a := added[0]
			if a.What != tt.want || a.Object != tt.wantID || a.Who != tt.who || a.Role != "command" || a.From != "command on the server" {
				t.Errorf("activity %+v", a)
			}
		})
	}
}
