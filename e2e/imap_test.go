package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/sealpost/sealpost/internal/testutil"
)

// inboxMessage is a message as a client's mail program would write it.
func inboxMessage(from, subject, extra, body string) string {
	return "From: " + from + "\r\nTo: " + From + "\r\nSubject: " + subject + "\r\nMessage-ID: <" +
		strings.ReplaceAll(subject, " ", "-") + "@client.example>\r\nDate: Sun, 22 Nov 2026 09:00:00 +0000\r\n" +
		extra + "\r\n" + body + "\r\n"
}

// TestIMAPIngest: Dovecot plays the provider's IMAP server. Clients' messages
// in the therapist's INBOX are archived once (through restarts of sealpost,
// a restart of Dovecot, and a UIDVALIDITY change), IDLE brings a new one in,
// nothing in the mailbox is changed, an Autocrypt key is proposed, and one
// acknowledgement goes out per client and period, never to automatic or
// list mail.
func TestIMAPIngest(t *testing.T) {
	testutil.RequireTools(t, "dovecot", "gpg")
	d := StartDovecot(t, From, "imap-secret")
	dir := t.TempDir()
	gpgKey(t, dir, "anna", "Anna <anna@client.example>", "future-default", "never")
	keyData := strings.TrimSpace(run(t, dir, "sh", "-c", "gpg --homedir anna --export anna@client.example | base64 -w 76"))
	autocrypt := "Autocrypt: addr=anna@client.example; prefer-encrypt=mutual; keydata=\r\n " + strings.ReplaceAll(keyData, "\n", "\r\n ") + "\r\n"

	msgs := map[string]string{
		"m1": inboxMessage("Anna <anna@client.example>", "Appointment next week", autocrypt, "Could we move Tuesday to Wednesday?"),
		"m2": inboxMessage("Shop <news@shop.example>", "Sale", "", "Not a client."),
		"m3": inboxMessage("anna@client.example", "Group newsletter", "List-Id: <group.client.example>\r\n", "A list message from a client."),
		"m4": inboxMessage("ben@client.example", "Out of office", "Auto-Submitted: auto-replied\r\n", "I am away."),
		"m5": inboxMessage("carl@client.example", "Bulk", "Precedence: bulk\r\n", "Bulk mail."),
	}
	for _, k := range []string{"m1", "m2", "m3", "m4", "m5"} {
		d.Append(t, "INBOX", msgs[k])
	}

	r := StartRelay(t, RelayOptions{Sections: d.AccountIMAPSection(t) + `[account.autoreply]
every = "7d"
text = """We read messages on working days and answer within two days.
In a crisis call or text 988, or text HOME to 741741."""
`, Setup: func(r *Relay) {
		// Before the first start: its first pass must know the clients.
		consentAll(t, r, "anna@client.example", "ben@client.example", "carl@client.example")
	}})
	archived := func() int { return strings.Count(r.Logs.String(), "archived a client's message") }
	reads := func() int { return strings.Count(r.Logs.String(), "mailbox read; waiting for new mail") }
	testutil.WaitWithin(t, 30*time.Second, "the four client messages archived", func() bool { return archived() >= 4 })

	// IDLE: with polling set to an hour, only IDLE can bring this in.
	msgs["m6"] = inboxMessage("anna@client.example", "Thank you", "", "Wednesday works, thank you.")
	d.Append(t, "INBOX", msgs["m6"])
	testutil.WaitWithin(t, 30*time.Second, "the new message archived through IDLE", func() bool { return archived() == 5 })

	// A second run archives nothing new.
	r.Stop(t)
	before, readsBefore := archived(), reads()
	r.Start(t)
	testutil.WaitWithin(t, 30*time.Second, "a pass over the mailbox after the restart", func() bool { return reads() > readsBefore })
	if n := archived(); n != before {
		t.Fatalf("a restart archived %d messages again", n-before)
	}

	// Dovecot goes away and comes back.
	d.Stop(t)
	testutil.WaitWithin(t, 30*time.Second, "the lost connection noticed", func() bool {
		return strings.Contains(r.Logs.String(), "IMAP connection to the provider lost")
	})
	d.Start(t)
	msgs["m7"] = inboxMessage("anna@client.example", "After the outage", "", "Are you there?")
	d.Append(t, "INBOX", msgs["m7"])
	testutil.WaitWithin(t, 60*time.Second, "the message after Dovecot's restart", func() bool { return archived() == before+1 })

	// The folder is renumbered: nothing is archived twice, new mail still is.
	d.ResetUIDValidity(t, "INBOX")
	testutil.WaitWithin(t, 60*time.Second, "the UIDVALIDITY change noticed", func() bool {
		return strings.Contains(r.Logs.String(), "UIDVALIDITY changed")
	})
	msgs["m8"] = inboxMessage("anna@client.example", "After the move", "", "New numbers.")
	d.Append(t, "INBOX", msgs["m8"])
	testutil.WaitWithin(t, 60*time.Second, "the message after the renumbering", func() bool { return archived() == before+2 })
	r.Stop(t)
	if n := archived(); n != 7 {
		t.Errorf("%d messages archived in all, want 7 (m1, m3-m8 once each)", n)
	}

	// sealpost never changed the mailbox: no message got \Seen or any flag.
	// (\Recent is the server's note for the first session to see a message.)
	for uid, flags := range d.Flags(t, "INBOX") {
		for _, f := range flags {
			if f != imap.Flag(`\Recent`) {
				t.Errorf("UID %d has flag %v: sealpost must only read", uid, f)
			}
		}
	}

	// The record holds each client message once, byte for byte.
	out := filepath.Join(t.TempDir(), "export")
	if _, errOut, code := r.Run(t, "", "archive", "export", "--key", filepath.Join(r.DataDir, "archive-private-key.asc"), "--out", out); code != 0 {
		t.Fatal(errOut)
	}
	var man struct {
		Messages []struct {
			Direction, Folder, Sender, File, Subject string
		} `json:"messages"`
	}
	b, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err := json.Unmarshal(b, &man); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, k := range []string{"m1", "m3", "m4", "m5", "m6", "m7", "m8"} {
		want[msgs[k]] = true
	}
	var outbound int
	for _, m := range man.Messages {
		if m.Direction != "inbound" {
			outbound++
			continue
		}
		body, _ := os.ReadFile(filepath.Join(out, m.File))
		if !want[string(body)] {
			t.Errorf("archived inbound message %s is not one put into the INBOX (or came twice):\n%s", m.File, body)
		}
		delete(want, string(body))
		if m.Folder != "INBOX" {
			t.Errorf("%s: folder %q", m.File, m.Folder)
		}
	}
	if len(want) > 0 {
		t.Errorf("%d client messages are not in the record", len(want))
	}
	if outbound != 1 {
		t.Errorf("%d outbound messages in the record, want the one acknowledgement", outbound)
	}

	// One acknowledgement, to Anna, through the relay (notice included);
	// none for the list, auto-submitted or bulk messages, none for her second.
	box := r.Outbox(t)
	if len(box) != 1 {
		t.Fatalf("%d messages in the outbox, want one acknowledgement", len(box))
	}
	ack := box[0]
	for _, w := range []string{"Delivered-To: anna@client.example", "Auto-Submitted: auto-replied", "988", "741741",
		"In-Reply-To: <Appointment-next-week@client.example>", "Notice of Confidentiality: e2e."} {
		if !strings.Contains(ack, w) {
			t.Errorf("the acknowledgement lacks %q:\n%s", w, ack)
		}
	}

	// Anna's Autocrypt key waits for an admin.
	list, _, _ := r.Run(t, "", "keys", "list")
	if !strings.Contains(list, "proposed") || !strings.Contains(list, "autocrypt") {
		t.Errorf("keys list does not show Anna's key as proposed:\n%s", list)
	}
	for _, c := range []string{"anna@client.example", "ben@client.example", "Could we move"} {
		if strings.Contains(r.Logs.String(), c) {
			t.Errorf("the log holds %q in clear", c)
		}
	}
	if t.Failed() {
		t.Logf("dovecot log:\n%s", d.Log())
	}
}
