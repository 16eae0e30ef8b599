package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/internal/testutil/browsertest"
)

// fingerprintInGroups is a fingerprint as the console shows it: groups of
// four, as a client reads theirs out on the phone.
func fingerprintInGroups(fpr string) string {
	var groups []string
	for i := 0; i < len(fpr); i += 4 {
		groups = append(groups, fpr[i:min(i+4, len(fpr))])
	}
	return strings.Join(groups, " ")
}

// TestAcceptAutocryptKeyInConsole: a client with consent to clear email
// replies from their own mail program with an Autocrypt header offering
// their key (made by GnuPG); the reply lands in the therapist's Dovecot
// mailbox and sealpost's IMAP reader brings it in. With pgp.autocrypt =
// "propose" the key waits: mail to the client still goes in clear under
// the consent. The admin finds the key on the console's Keys page with its
// fingerprint in groups of four, compares and accepts it in Chromium; the
// next message to the client is PGP/MIME that GnuPG decrypts with the
// client's own key, and the acceptance is in the activity log.
func TestAcceptAutocryptKeyInConsole(t *testing.T) {
	testutil.RequireTools(t, "dovecot", "gpg", "swaks", "chromium")
	d := StartDovecot(t, From, "imap-secret")
	dir := t.TempDir()
	gpgKey(t, dir, "zoe", "Zoe <zoe@client.example>", "future-default", "never")
	var fpr string
	for _, line := range strings.Split(run(t, dir, "gpg", "--homedir", "zoe", "--with-colons", "--list-keys"), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && fpr == "" {
			fpr = f[9]
		}
	}
	keyData := strings.TrimSpace(run(t, dir, "sh", "-c", "gpg --homedir zoe --export zoe@client.example | base64 -w 76"))
	autocrypt := "Autocrypt: addr=zoe@client.example; prefer-encrypt=mutual; keydata=\r\n " + strings.ReplaceAll(keyData, "\n", "\r\n ") + "\r\n"
	d.Append(t, "INBOX", inboxMessage("Zoe <zoe@client.example>", "Re: Next session", autocrypt, "Thursday is fine. I set up encryption."))

	r, url := startConsoleRelay(t, RelayOptions{Sections: d.AccountIMAPSection(t) + "[pgp]\nautocrypt = \"propose\"\n",
		Setup: func(r *Relay) { consentAll(t, r, "zoe@client.example") }})
	testutil.WaitWithin(t, 30*time.Second, "the client's reply read from the mailbox", func() bool {
		return strings.Contains(r.Logs.String(), "archived a client's message")
	})
	if list, _, _ := r.Run(t, "", "keys", "list"); !strings.Contains(list, fpr) || !strings.Contains(list, "proposed") {
		t.Fatalf("keys list does not show the offered key as proposed:\n%s", list)
	}
	if out, ok := Swaks(t, r.SwaksArgs("--to", "zoe@client.example", "--header", "Subject: Before", "--body", "Sent before the key was accepted.")...); !ok ||
		!strings.Contains(out, "unencrypted, with the client's written consent") {
		t.Fatalf("mail to the client before the key is accepted:\n%s", out)
	}

	ctx := consoleBrowser(t)
	shots := browsertest.ShotDir(t)
	consoleLogIn(t, ctx, url, consoleAdmin)
	browsertest.Open(t, ctx, url+"/keys", "main h1")
	shown := browsertest.Eval[[]string](t, ctx, `Array.from(document.querySelectorAll("tbody tr td.mono")).map(e => e.textContent)`)
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "Offered by clients, waiting for you") || len(shown) != 1 ||
		shown[0] != fingerprintInGroups(fpr) {
		t.Fatalf("the Keys page shows the fingerprints %q, want %q:\n%s", shown, fingerprintInGroups(fpr), text)
	}
	browsertest.Axe(t, ctx, "the keys page with a proposed key")
	browsertest.Screenshot(t, ctx, shots, "e2e-console-admin-keys-proposed")
	browsertest.Do(t, ctx, "compare", chromedp.Click(`a[aria-label="Compare and accept `+fpr+`"]`), chromedp.WaitVisible("dd.fingerprint"))
	if got := browsertest.Eval[string](t, ctx, `document.querySelector("dd.fingerprint").textContent`); got != fingerprintInGroups(fpr) {
		t.Errorf("the comparison page shows %q", got)
	}
	browsertest.Screenshot(t, ctx, shots, "e2e-console-admin-key-compare")
	browsertest.Do(t, ctx, "accept", chromedp.Click(`form[action="/keys/`+fpr+`/accept"] button`), chromedp.WaitVisible(".done"))
	if list, _, _ := r.Run(t, "", "keys", "list"); !strings.Contains(list, "usable") {
		t.Fatalf("keys list after the acceptance:\n%s", list)
	}

	before := len(r.Outbox(t))
	if out, ok := Swaks(t, r.SwaksArgs("--to", "zoe@client.example", "--header", "Subject: After", "--body", "SESSION-NOTES-FOR-ZOE")...); !ok ||
		!strings.Contains(out, "to be encrypted with their OpenPGP key") {
		t.Fatalf("mail to the client after the key was accepted:\n%s", out)
	}
	var sent string
	testutil.WaitFor(t, "the encrypted copy in the outbox", func() bool {
		for _, m := range r.Outbox(t) {
			if strings.Contains(m, "multipart/encrypted") {
				sent = m
			}
		}
		return len(r.Outbox(t)) > before && sent != ""
	})
	if strings.Contains(sent, "SESSION-NOTES-FOR-ZOE") || !strings.Contains(sent, `protocol="application/pgp-encrypted"`) {
		t.Fatalf("the provider's copy is not PGP/MIME or shows the body:\n%.3000s", sent)
	}
	i, j := strings.Index(sent, "-----BEGIN PGP MESSAGE-----"), strings.Index(sent, "-----END PGP MESSAGE-----")
	if i < 0 || j < 0 {
		t.Fatalf("no PGP message in the copy:\n%.3000s", sent)
	}
	msg := filepath.Join(dir, "to-zoe.asc")
	os.WriteFile(msg, []byte(sent[i:j+len("-----END PGP MESSAGE-----")]+"\n"), 0o644)
	run(t, dir, "gpg", "--homedir", "zoe", "--batch", "--status-fd", "2", "--output", "to-zoe.out", "--decrypt", msg)
	if plain, _ := os.ReadFile(filepath.Join(dir, "to-zoe.out")); !strings.Contains(string(plain), "SESSION-NOTES-FOR-ZOE") {
		t.Errorf("gpg's decryption with the client's key:\n%.2000s", plain)
	}

	browsertest.Open(t, ctx, url+"/activity", "main h1")
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "accepted a key a client offered") || !strings.Contains(text, fpr) {
		t.Errorf("the activity log after the acceptance:\n%s", text)
	}
}
