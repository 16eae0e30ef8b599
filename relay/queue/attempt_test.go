package queue

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/ids"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/internal/relaytest"
	"github.com/sealpost/sealpost/relay/provider"
	"github.com/sealpost/sealpost/rules"
)

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
			arc := &relaytest.Archive{}
			q, sp := newTestQueue(t, dlv, arc, 1, check)
			e := spoolMessage(t, sp,
				rules.Copy{Name: "clear", Recipients: []string{client, colleague}, Protection: record.Consented},
				rules.Copy{Name: "enc", Recipients: []string{keyHolder}, Protection: record.Encrypted},
				rules.Copy{Name: "own", Recipients: []string{other}, Protection: record.Internal})
			id := e.meta.ID
			q.add(e)
			if tt.wantPending > 0 {
				testutil.WaitFor(t, "the attempt to end", func() bool { l := q.List(); return len(l) == 1 && l[0].Attempts == 1 })
				l := q.List()[0]
				if l.Pending != tt.wantPending || !strings.Contains(l.LastError, "consent registry") {
					t.Errorf("queued %+v; want %d recipients waiting for the consent registry", l, tt.wantPending)
				}
				if !relaytest.ContainsKind(arc.EventKinds(id), archive.Deferred) {
					t.Errorf("archived %v; want the deferral", arc.EventKinds(id))
				}
			} else {
				testutil.WaitFor(t, "the queue to empty", func() bool { return len(q.List()) == 0 })
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
			for _, ev := range arc.EventsOf(id) {
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

// TestProviderGetsDecidedAddresses: a message spooled with the addresses
// as typed (an older spool file) still goes to the provider with the
// normalised ones, as does everything spooled now.
func TestProviderGetsDecidedAddresses(t *testing.T) {
	p := relaytest.StartProvider(t, nil, string(provider.NoTLS), "", "")
	u := provider.NewUpstream(provider.Config{Address: p.Addr, TLS: provider.NoTLS, Hello: "relay.test", Timeout: 5 * time.Second})
	q, sp := newTestQueue(t, u, nil, 1, nil)

	in, err := sp.newIncoming(ids.New(time.Now()), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	w, _ := in.Create("sent")
	io.WriteString(w, "From: "+testFrom+"\r\nSubject: s\r\n\r\nx\r\n")
	w.Close()
	if err := in.Commit(Envelope{Account: testUser, Sender: "Therapist@PRACTICE.example",
		Copies: []rules.Copy{{Name: "sent", Recipients: []string{"Anna@B\u00fccher.example"}, Protection: record.Internal}}}, false); err != nil {
		t.Fatal(err)
	}
	q.Enqueue(in)
	testutil.WaitFor(t, "the provider to get the message", func() bool { return len(p.Messages()) == 1 })
	m := p.Messages()[0]
	if m.From != testFrom || len(m.To) != 1 || m.To[0] != "anna@xn--bcher-kva.example" {
		t.Errorf("provider's envelope: from %q to %q; want %q to anna@xn--bcher-kva.example", m.From, m.To, testFrom)
	}
}
