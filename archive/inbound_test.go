package archive

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

// TestRecordInboundOnce: a client's message found over IMAP is recorded
// once, whatever the folder, restart or UIDVALIDITY; the position per folder
// survives a restart; export shows it as inbound.
func TestRecordInboundOnce(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	reply := "From: Anna <anna@client.example>\r\nTo: therapist@practice.example\r\nSubject: Re: Tuesday\r\nMessage-ID: <r1@client.example>\r\n\r\nTuesday is fine.\r\n"
	other := strings.Replace(reply, "Tuesday is fine.", "Or Wednesday?", 1)
	in := func(id, folder string, uv, uid uint32) IngestedMessage {
		return IngestedMessage{
			Message: Message{ID: id, Time: f.now, Direction: Inbound, Account: "therapist", Sender: "anna@client.example", Folder: folder},
			Clients: []string{"anna@client.example"}, Source: IngestSource{Account: "therapist", Folder: folder, UIDValidity: uv, UID: uid},
		}
	}
	steps := []struct {
		name     string
		msg      IngestedMessage
		body     string
		recorded bool
	}{
		{"first sight", in("in1", "INBOX", 7, 3), reply, true},
		{"the same bytes in another folder", in("in2", "Archive", 1, 9), reply, false},
		{"another message", in("in3", "INBOX", 7, 4), other, true},
	}
	for _, s := range steps {
		got, err := a.RecordInbound(ctx, s.msg, strings.NewReader(s.body))
		if err != nil || got != s.recorded {
			t.Fatalf("%s: recorded=%v err=%v, want %v", s.name, got, err, s.recorded)
		}
	}
	if uv, uid := a.IngestState("therapist", "INBOX"); uv != 7 || uid != 4 {
		t.Errorf("INBOX state %d/%d, want 7/4", uv, uid)
	}
	a.Close()

	a = f.open(t, 0)
	if uv, uid := a.IngestState("therapist", "INBOX"); uv != 7 || uid != 4 {
		t.Errorf("after a restart INBOX state %d/%d, want 7/4", uv, uid)
	}
	// The server renumbered the folder: the same messages under new UIDs
	// are not recorded again, and the position follows the new validity.
	for i, body := range []string{reply, other} {
		got, err := a.RecordInbound(ctx, in("again", "INBOX", 8, uint32(i+1)), strings.NewReader(body))
		if err != nil || got {
			t.Fatalf("after UIDVALIDITY change: recorded=%v err=%v", got, err)
		}
	}
	if uv, uid := a.IngestState("therapist", "INBOX"); uv != 8 || uid != 2 {
		t.Errorf("after UIDVALIDITY change INBOX state %d/%d, want 8/2", uv, uid)
	}
	a.Close()

	if _, err := verify(f.dir, nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "export")
	rep, err := Export(ctx, f.dir, f.priv, out, Filter{Clients: []string{"anna@client.example"}, Since: f.now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Messages != 2 {
		t.Fatalf("export has %d messages, want 2", rep.Messages)
	}
	var m manifest
	b, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	json.Unmarshal(b, &m)
	for _, mm := range m.Messages {
		if mm.Direction != Inbound || mm.Folder != "INBOX" || mm.Sender != "anna@client.example" {
			t.Errorf("manifest entry %+v", mm)
		}
		body, _ := os.ReadFile(filepath.Join(out, mm.File))
		if string(body) != reply && string(body) != other {
			t.Errorf("%s is not the message as found:\n%s", mm.File, body)
		}
	}
}

// TestPruneCarriesPositions: after the records that told how far each IMAP
// folder was read, and which consent events were copied, are pruned, a
// start still knows both: the reader does not archive old mail again as
// new, nor the registry's history get copied in again.
func TestPruneCarriesPositions(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	in := IngestedMessage{
		Message: Message{ID: "in1", Time: f.now, Direction: Inbound, Account: "therapist", Sender: "anna@client.example", Folder: "INBOX"},
		Clients: []string{"anna@client.example"}, Source: IngestSource{Account: "therapist", Folder: "INBOX", UIDValidity: 7, UID: 41},
	}
	if ok, err := a.RecordInbound(ctx, in, strings.NewReader("From: anna@client.example\r\n\r\nhello\r\n")); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := a.RecordConsent(ctx, record.ConsentEvent{ID: 5, Client: "Chart 5", Addresses: []string{"anna@client.example"}, Kind: "given", Signed: "2026-01-02"}); err != nil {
		t.Fatal(err)
	}
	a.CloseSegment(ctx)
	f.advance(3 * 365 * 24 * time.Hour)
	m, body := testMessage(1, "bob@client.example")
	a.RecordMessage(ctx, m, strings.NewReader(body))
	if rep, err := a.Prune(ctx, 365*24*time.Hour, false); err != nil || len(rep.Removed) != 1 {
		t.Fatalf("prune: %+v, %v", rep, err)
	}
	a.Close()
	if _, err := verify(f.dir, nil); err != nil {
		t.Fatalf("verify after the prune: %v", err)
	}
	a2 := f.open(t, 0)
	defer a2.Close()
	if uv, uid := a2.IngestState("therapist", "INBOX"); uv != 7 || uid != 41 {
		t.Errorf("INBOX read to %d/%d after the prune, want 7/41", uv, uid)
	}
	if id := a2.LastConsentID(); id != 5 {
		t.Errorf("last consent event %d after the prune, want 5", id)
	}
}
