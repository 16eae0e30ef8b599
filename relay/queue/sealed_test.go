package queue

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
	"github.com/sealpost/sealpost/rules"
)

// TestSealedCheckedBeforeSending: a sealed copy is handed to the provider
// only while its recipient still has the passphrase it was sealed with;
// otherwise it fails with the reason (the sender is told, the archive
// records it), as for a withdrawn consent. When it cannot be told, the
// copy waits. Other copies are not asked about.
func TestSealedCheckedBeforeSending(t *testing.T) {
	const (
		sealedA   = "anna@client.example"
		sealedB   = "bert@client.example"
		colleague = "colleague@practice.example"
	)
	tests := []struct {
		name        string
		withdrawn   map[string]string
		err         error
		wantSent    map[string][]string
		wantFailed  string
		wantPending int
	}{
		{name: "passphrases unchanged",
			wantSent: map[string][]string{"sealed-1": {sealedA}, "sealed-2": {sealedB}, "own": {colleague}}},
		{name: "one passphrase removed", withdrawn: map[string]string{sealedB: "passphrase removed on 2026-12-02"},
			wantSent: map[string][]string{"sealed-1": {sealedA}, "own": {colleague}}, wantFailed: sealedB},
		{name: "registry unreadable", err: fmt.Errorf("passphrase check: %w", rules.ErrUnavailable),
			wantSent: map[string][]string{"own": {colleague}}, wantPending: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			asked := map[string]int64{}
			check := func(ctx context.Context, rcpt string, eventID int64, now time.Time) (string, error) {
				mu.Lock()
				asked[rcpt] = eventID
				mu.Unlock()
				return tt.withdrawn[rcpt], tt.err
			}
			dlv := &scriptedDlv{}
			arc := &relaytest.Archive{}
			q := openTestQueue(t, t.TempDir(), dlv, arc, 1, nil)
			q.sealed = check
			if err := q.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Stop(5 * time.Second) })
			e := spoolMessage(t, q.spool,
				rules.Copy{Name: "sealed-1", Recipients: []string{sealedA}, Protection: record.Sealed, SealedWith: 11},
				rules.Copy{Name: "sealed-2", Recipients: []string{sealedB}, Protection: record.Sealed, SealedWith: 12},
				rules.Copy{Name: "own", Recipients: []string{colleague}, Protection: record.Internal})
			id := e.meta.ID
			q.add(e)
			if tt.wantPending > 0 {
				testutil.WaitFor(t, "the attempt to end", func() bool { l := q.List(); return len(l) == 1 && l[0].Attempts == 1 })
				if l := q.List()[0]; l.Pending != tt.wantPending || !strings.Contains(l.LastError, "passphrase") {
					t.Errorf("queued %+v; want %d recipients waiting for the registry", l, tt.wantPending)
				}
			} else {
				testutil.WaitFor(t, "the queue to empty", func() bool { return len(q.List()) == 0 })
			}
			if got := dlv.handedOver(id); !reflect.DeepEqual(got, tt.wantSent) {
				t.Errorf("handed to the provider %v; want %v", got, tt.wantSent)
			}
			mu.Lock()
			if want := map[string]int64{sealedA: 11, sealedB: 12}; !reflect.DeepEqual(asked, want) {
				t.Errorf("asked about %v; want %v (each sealed copy with its passphrase event)", asked, want)
			}
			mu.Unlock()
			var notices []string
			dlv.mu.Lock()
			for _, s := range dlv.sent {
				if strings.Contains(s.body, "multipart/report") {
					notices = append(notices, strings.ReplaceAll(s.body, "=\r\n", ""))
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
			for _, want := range []string{"Final-Recipient: rfc822; " + tt.wantFailed, "Status: 5.7.1", "passphrase removed on 2026-12-02",
				"send the message again"} {
				if !strings.Contains(notices[0], want) {
					t.Errorf("failure notice lacks %q:\n%s", want, notices[0])
				}
			}
			var bounced []archive.Event
			for _, ev := range arc.EventsOf(id) {
				if ev.Kind == archive.Bounced {
					bounced = append(bounced, ev)
				}
			}
			if len(bounced) != 1 || !reflect.DeepEqual(bounced[0].Recipients, []string{tt.wantFailed}) || !strings.HasPrefix(bounced[0].Reply, passphraseChangedPrefix) {
				t.Errorf("archived failures %+v; want %s, passphrase changed", bounced, tt.wantFailed)
			}
		})
	}
}
