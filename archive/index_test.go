package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

// practiceExport records what a practice's record holds in a few days (a
// group message with a refused and a Bcc recipient, every protection,
// deliveries deferred, bounced and pending, a client's reply, refusals
// with and without a message, the consent history) and exports it with
// times in zone. It returns the export folder.
func practiceExport(t *testing.T, zone *time.Location) string {
	t.Helper()
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 14, 5, 9, 0, time.UTC)
	consent := func(id int64, client, addr string) *record.ConsentEvent {
		return &record.ConsentEvent{ID: id, Kind: record.ConsentGiven, Client: client, Addresses: []string{addr}, Signed: "2026-01-05",
			Evidence: "email consent form v2, scanned to chart " + client, RecordedBy: "admin", RecordedAt: at.Add(-300 * time.Hour)}
	}
	for _, ev := range []*record.ConsentEvent{consent(1, "Chart 17", "anna@client.example"), consent(2, "Chart 18", "ben.longname-with-many-parts@client-with-a-long-domain.example"),
		{ID: 3, Kind: record.PassphraseSet, Client: "Chart 19", Addresses: []string{"carla@client.example"}, RecordedBy: "admin", RecordedAt: at.Add(-200 * time.Hour)},
		{ID: 4, Kind: record.ConsentRevoked, Client: "Chart 20", Addresses: []string{"dora@client.example"}, Reason: "asked for sealed PDFs instead", RecordedBy: "admin", RecordedAt: at.Add(-100 * time.Hour)}} {
		if err := a.RecordConsent(ctx, *ev); err != nil {
			t.Fatal(err)
		}
	}
	recordMsg := func(id, subject, header string, when time.Time, m Message) {
		t.Helper()
		m.ID, m.Time, m.Account, m.Sender = id, when, "therapist", "therapist@practice.example"
		if m.Direction == "" {
			m.Direction = Outbound
		}
		body := "From: Maria Keller <therapist@practice.example>\r\n" + header + "Subject: " + subject + "\r\nMessage-ID: <" + id + "@practice.example>\r\n" +
			"Date: " + when.Format(time.RFC1123Z) + "\r\n\r\nSession notes.\r\n"
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	refuse := func(when time.Time, rcpt, ref, code, reason string) {
		if err := a.RecordRefusal(ctx, RefusalRecord{Time: when, Account: "therapist", Recipient: rcpt, Ref: ref, Code: code, Reason: reason}); err != nil {
			t.Fatal(err)
		}
	}
	event := func(id string, when time.Time, kind EventKind, reply string, rcpts ...string) {
		if err := a.RecordEvent(ctx, Event{MessageID: id, Time: when, Kind: kind, Recipients: rcpts, Reply: reply}); err != nil {
			t.Fatal(err)
		}
	}
	anna := record.Decision{Recipient: "anna@client.example", Address: "anna@client.example", Protection: record.Consented, Reason: "written consent on file", Consent: consent(1, "Chart 17", "anna@client.example")}
	ben := record.Decision{Recipient: "ben.longname-with-many-parts@client-with-a-long-domain.example", Address: "ben.longname-with-many-parts@client-with-a-long-domain.example",
		Protection: record.Encrypted, Reason: "usable OpenPGP key", KeyFingerprint: "6A3F1B2C4D5E6F708192A3B4C5D6E7F801234567"}
	carla := record.Decision{Recipient: "carla@client.example", Address: "carla@client.example", Protection: record.Sealed, Bcc: true, Reason: "passphrase on file",
		Consent: &record.ConsentEvent{ID: 3, Kind: record.PassphraseSet, Client: "Chart 19", RecordedAt: at.Add(-200 * time.Hour)}, SealedPDFSHA256: strings.Repeat("9f", 32), SealedPDFSize: 48211}
	colleague := record.Decision{Recipient: "colleague@practice.example", Address: "colleague@practice.example", Protection: record.Internal, Reason: "internal domain"}

	refuse(at.Add(-2*time.Second), "dora@client.example", "R7K2QX", "consent_revoked", "<dora@client.example> withdrew consent to unencrypted email on 2026-11-26, and no passphrase or encryption key is on file; ask your admin how to reach them now")
	recordMsg("q1", "Group session on Tuesday: agenda, rooms, and the homework we agreed on (please read before)",
		"To: anna@client.example, ben.longname-with-many-parts@client-with-a-long-domain.example, dora@client.example\r\nCc: colleague@practice.example\r\n",
		at, Message{Decisions: []record.Decision{anna, ben, colleague, carla}, Refused: []RefusedRecipient{{Address: "dora@client.example", Ref: "R7K2QX"}}})
	event("q1", at.Add(time.Second), Delivered, "250 2.0.0 Ok: queued as 4ZQX1", "anna@client.example", "colleague@practice.example")
	event("q1", at.Add(2*time.Second), Deferred, "451 4.7.1 Greylisted, please try again in 300 seconds (see https://provider.example/help/greylisting-and-what-it-means)", "carla@client.example")
	event("q1", at.Add(5*time.Minute), Deferred, "451 4.7.1 Greylisted, please try again in 300 seconds", "carla@client.example")
	event("q1", at.Add(10*time.Minute), Delivered, "250 2.0.0 Ok: queued as 4ZQX9", "carla@client.example")
	event("q1", at.Add(11*time.Minute), Bounced, "550 5.1.1 <ben.longname-with-many-parts@client-with-a-long-domain.example>: Recipient address rejected: User unknown in virtual mailbox table", ben.Address)
	recordMsg("q2", "Re: appointment", "To: anna@client.example\r\n", at.Add(time.Hour), Message{Decisions: []record.Decision{anna}})
	recordMsg("i1", "Thank you", "To: therapist@practice.example\r\n", at.Add(2*time.Hour), Message{Direction: Inbound, Sender: "anna@client.example", Folder: "INBOX"})
	refuse(at.Add(3*time.Hour), "", "M4TJ7C", "content_rule", "The message looks like it holds a US Social Security number, which may not be sent in clear; nothing was sent to anybody")
	for i := 0; i < 6; i++ {
		recordMsg(fmt.Sprintf("q%d", 10+i), fmt.Sprintf("Weekly check-in %d", i+1), "To: colleague@practice.example\r\n", at.Add(time.Duration(24+i)*time.Hour),
			Message{Decisions: []record.Decision{colleague}})
	}
	// A consent recorded in the console, with its scan and its activity.
	scan, err := a.RecordEvidence(ctx, Evidence{Time: at.Add(4 * time.Hour), Addresses: []string{"emil@client.example"}, Client: "Chart 21", Filename: "Einwilligung Emil.pdf",
		Type: "application/pdf", RecordedBy: "office (console)"}, testPDF(t, "Consent form v3"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RecordConsent(ctx, record.ConsentEvent{ID: 5, Kind: record.ConsentGiven, Client: "Chart 21", Addresses: []string{"emil@client.example"}, Signed: "2026-11-30",
		Evidence: "Consent form v3 (scan " + scan + " in the archive)", RecordedBy: "office (console)", RecordedAt: at.Add(4 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := a.RecordActivity(ctx, Activity{Time: at.Add(4 * time.Hour), Who: "office", Role: "admin", What: "consent-recorded", Object: "5", From: "192.0.2.7",
		Addresses: []string{"emil@client.example"}}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	out := filepath.Join(t.TempDir(), "export")
	if _, err := ExportWith(ctx, f.dir, f.priv, out, Filter{}, ExportOptions{Location: zone}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIndexContent: index.html says, for each message, what became of
// every recipient and of everyone its To and Cc name; times are to the
// second with their zone; a refusal links to the message its submission
// became, and the message back to the refusal; the page runs no inline
// script and loads nothing from the network.
func TestIndexContent(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	out := practiceExport(t, cet)
	b, err := os.ReadFile(filepath.Join(out, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := html.UnescapeString(string(b))
	for _, want := range []string{
		`<time datetime="2026-11-30T14:05:09Z">2026-11-30 15:05:09 CET (UTC+01:00)</time>`,
		`<td data-label="Recipient">dora@client.example</td><td data-label="Field">To</td>`,
		`Refused when the message was submitted: <a href="#refusal-1">ref R7K2QX</a>; the others got it.`,
		`<tr id="refusal-1">`, `sent to the others: <a href="#msg-q1">Group session on Tuesday`,
		`<td data-label="Field">Bcc</td>`, `<td data-label="Field">Cc</td>`,
		"bounced 2026-11-30 15:16:09 CET (UTC+01:00): 550 5.1.1",
		"deferred 2 times, the last 2026-11-30 15:10:09 CET (UTC+01:00): 451 4.7.1 Greylisted",
		"delivered 2026-11-30 15:15:09 CET (UTC+01:00): 250 2.0.0 Ok: queued as 4ZQX9",
		"PDF sent: 48211 octets, SHA-256 " + strings.Repeat("9f", 32),
		"signed 2026-01-05: email consent form v2",
		`<script src="index.js" defer></script>`, `<link rel="stylesheet" href="index.css">`,
		"(the whole message)", "not sent",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("index.html lacks %s", want)
		}
	}
	if regexp.MustCompile(`<script>|<style|\son[a-z]+="|style="|https?://`).MatchString(strings.ReplaceAll(page, "https://provider.example/help/greylisting-and-what-it-means", "")) {
		t.Errorf("index.html has inline script or style, or loads from the network")
	}
	var man struct {
		Messages []struct {
			ID        string    `json:"id"`
			NotSentTo []NotSent `json:"not_sent_to"`
		} `json:"messages"`
		Refusals []struct {
			Ref     string `json:"ref"`
			Message string `json:"message"`
		} `json:"refusals"`
	}
	mb, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err := json.Unmarshal(mb, &man); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(man.Messages[0].NotSentTo); got != "[{dora@client.example to R7K2QX}]" {
		t.Errorf("manifest: the group message's not_sent_to is %s", got)
	}
	if man.Refusals[0].Message != "q1" || man.Refusals[1].Message != "" {
		t.Errorf("manifest: refusals link to %q and %q, want q1 and none", man.Refusals[0].Message, man.Refusals[1].Message)
	}
}
