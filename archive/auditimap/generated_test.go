package auditimap

import (
	"bytes"
	"context"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/record"
)

// mailboxText fetches every message of a mailbox and returns their bodies,
// quoted-printable undone, with their UIDs.
func mailboxText(t *testing.T, c *imapclient.Client, box string) (texts []string, uids []imap.UID) {
	t.Helper()
	sel, err := c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("SELECT %s: %v", box, err)
	}
	if sel.NumMessages == 0 {
		return nil, nil
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		raw := m.FindBodySection(&imap.FetchItemBodySection{Peek: true})
		head, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
		if bytes.Contains(head, []byte("quoted-printable")) {
			body, _ = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		}
		texts = append(texts, string(head)+"\r\n\r\n"+string(body))
		uids = append(uids, m.UID)
	}
	return texts, uids
}

func mustContain(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, text)
		}
	}
}

// TestGeneratedMailboxes: what an auditor's mail client shows besides the
// archived messages. INBOX (every client opens it first) explains the
// folders; Decisions has, for each message sent, how each recipient was
// protected, on what basis and what became of the copy, and who the header
// names without having received it, and is replaced when a delivery is
// recorded; Refused has every refusal. Each says the view wrote it, and
// none of it is in the archived folders.
func TestGeneratedMailboxes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	carol := "carol@client.example"
	body := []byte("From: therapist@practice.example\r\nTo: " + client + ", " + carol + "\r\nCc: " + colleague + "\r\nSubject: Group session\r\n" +
		"Message-ID: <group@practice.example>\r\nDate: " + at.Format(time.RFC1123Z) + "\r\n\r\nSee you all on Tuesday.\r\n")
	anna := record.Decision{Recipient: client, Address: client, Protection: record.Consented, Reason: "consent to unencrypted email on file",
		Consent: &record.ConsentEvent{ID: 3, Kind: "given", Client: "Chart 17", Signed: "2026-01-05", Evidence: "consent form v2"}}
	bob := record.Decision{Recipient: "bob@client.example", Address: "bob@client.example", Protection: record.Encrypted, Bcc: true,
		Reason: "a usable OpenPGP key", KeyFingerprint: "0123456789ABCDEF0123456789ABCDEF01234567"}
	dave := "dave@client.example" // named in no header: a refused Bcc
	m := archive.Message{ID: "q1", Time: at, Direction: archive.Outbound, Account: "therapist", Sender: "therapist@practice.example",
		Decisions: []record.Decision{anna, internal(colleague), bob}, Refused: []archive.RefusedRecipient{{Address: carol, Ref: "R7K2QX"}, {Address: dave, Ref: "T4N9HC"}}}
	if err := f.arch.RecordRefusal(ctx, archive.RefusalRecord{Time: at.Add(-time.Second), Account: "therapist", Recipient: carol,
		Reason: "no consent on file for unencrypted email and no OpenPGP key", Ref: "R7K2QX", Code: "nothing_on_file"}); err != nil {
		t.Fatal(err)
	}
	if err := f.arch.RecordMessage(ctx, m, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	f.inbound(t, "i1", "Re: Group session", "Thank you.", at.Add(time.Hour))
	addr, tc := f.serve(t, io.Discard)
	c := login(t, addr, tc)

	for _, name := range []string{"INBOX", "inbox"} {
		texts, _ := mailboxText(t, c, name)
		if len(texts) != 1 {
			t.Fatalf("%s holds %d messages, want the one explaining the folders", name, len(texts))
		}
		mustContain(t, "INBOX's message", texts[0], "X-Sealpost-Generated:", "not part of the clinical record", "Decisions", "Refused", "Clients/A/ADDRESS")
	}

	texts, uids := mailboxText(t, c, "Decisions")
	if len(texts) != 1 {
		t.Fatalf("Decisions holds %d messages, want 1 (the outbound message; none for the client's)", len(texts))
	}
	first := texts[0]
	mustContain(t, "the summary", first,
		"Subject: Decisions: Group session", "In-Reply-To: <group@practice.example>", "X-Sealpost-Generated:", "not part of the clinical record",
		client+" (To)", "consented: consent to unencrypted email on file", `signed 2026-01-05: "consent form v2"`, `client "Chart 17"`,
		colleague+" (Cc)", "internal",
		"bob@client.example (Bcc)", "encrypted", "0123456789ABCDEF0123456789ABCDEF01234567",
		"Delivery: pending",
		"NAMED, NEVER SENT TO", carol+" (To): refused when the message was submitted, ref R7K2QX", dave+" (not in To or Cc): refused")

	// A delivery is recorded: the summary is replaced, with a higher UID.
	if _, err := c.Select("Decisions", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := f.arch.RecordEvent(ctx, archive.Event{MessageID: "q1", Time: at.Add(2 * time.Second), Kind: archive.Delivered,
		Recipients: []string{client}, Reply: "250 2.0.0 Ok: queued as 4XYZ"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Errorf("after NOOP the open Decisions folder has %d messages, want 1 (the old summary expunged, the new one there)", n)
	}
	texts, uids2 := mailboxText(t, c, "Decisions")
	if len(texts) != 1 || uids2[0] <= uids[0] {
		t.Fatalf("after a delivery: %d summaries, UIDs %v then %v; want one, with a higher UID", len(texts), uids, uids2)
	}
	mustContain(t, "the summary after a delivery", texts[0], "Delivery: delivered 2026-11-02 09:00:02 UTC: 250 2.0.0 Ok: queued as 4XYZ")

	texts, _ = mailboxText(t, c, "Refused")
	if len(texts) != 1 {
		t.Fatalf("Refused holds %d messages, want 1", len(texts))
	}
	mustContain(t, "the refusal", texts[0], "Subject: Refused: "+carol, "no consent on file", "Account:  therapist", "X-Sealpost-Generated:",
		"Ref:      R7K2QX", "Code:     nothing_on_file", "The others of its submission got it:", `"Group session", record 3`, "In-Reply-To: <group@practice.example>")

	// The archived folders hold only the archived messages, unchanged.
	for _, box := range []string{"All", clientBoxName} {
		texts, _ := mailboxText(t, c, box)
		for _, tx := range texts {
			if strings.Contains(tx, "X-Sealpost-Generated") {
				t.Errorf("%s holds a generated message", box)
			}
		}
	}
	texts, _ = mailboxText(t, c, "All")
	if len(texts) != 2 || texts[0] != string(body) {
		t.Errorf("All's first message is not the archived one byte for byte")
	}
}
