package e2e

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// The SSN rule of config.example.toml.
const fakeEncPolicy = `[policy]
internal_domains = ["practice.example"]
notice = "Notice of Confidentiality: e2e."

[[policy.rule]]
name = "us-ssn"
pattern = '\b(?:00[1-9]|0[1-9]\d|[1-578]\d{2}|6[0-57-9]\d|66[0-57-9])[- ](?:0[1-9]|[1-9]\d)[- ](?:000[1-9]|00[1-9]\d|0[1-9]\d{2}|[1-9]\d{3})\b'
on = "any"
action = "refuse"
reply = "This message contains what looks like a US Social Security number and may not go to a client in unencrypted email; remove it, or send it encrypted"
`

// manifestWithReasons is the part of an export's manifest.json these tests read.
type manifestWithReasons struct {
	Messages []struct {
		File       string `json:"file"`
		MessageID  string `json:"message_id"`
		Recipients []struct {
			Address        string `json:"address"`
			Protection     string `json:"protection"`
			Reason         string `json:"reason"`
			KeyFingerprint string `json:"key_fingerprint"`
		} `json:"recipients"`
	} `json:"messages"`
}

// TestFakeEncryption: messages whose type says they are encrypted, sent by
// swaks to a client who has an OpenPGP key and never consented to clear
// email. Fake PGP/MIME and fake S/MIME reach the outbox encrypted by
// sealpost: the client's key opens them (gpg, sq) and finds the text and
// the notice, and the record says sealpost encrypted them. Real PGP/MIME
// made by gpg, and real S/MIME made by openssl, pass through byte for byte.
// A forwarded message with an SSN to a consented client is refused with the
// rule's reply; a message without its closing boundary gets 554 5.6.0.
func TestFakeEncryption(t *testing.T) {
	testutil.RequireTools(t, "swaks", "gpg", "sq", "openssl")
	dir := t.TempDir()
	pub := gpgKey(t, dir, "client", "Key Holder <key@client.example>", "future-default", "never")
	secret := filepath.Join(dir, "client-secret.asc")
	os.WriteFile(secret, []byte(run(t, dir, "gpg", "--homedir", "client", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--armor", "--export-secret-keys")), 0o600)
	r := StartRelay(t, RelayOptions{Sections: fakeEncPolicy})
	if stdout, stderr, code := r.Run(t, "", "keys", "import", pub); code != 0 {
		t.Fatalf("keys import: exit %d\n%s%s", code, stdout, stderr)
	}
	if stdout, stderr, code := r.Run(t, "", "consent", "add", "consented@client.example", "--evidence", "form", "--date", "2026-01-02"); code != 0 {
		t.Fatalf("consent add: exit %d\n%s%s", code, stdout, stderr)
	}

	header := func(to, id string) string {
		return "From: " + From + "\nTo: " + to + "\nSubject: notes " + id + "\nMessage-ID: <" + id + "@practice.example>\nMIME-Version: 1.0\n"
	}
	// swaks ends DATA with CRLF . CRLF after the data's own last line end:
	// data that ends without one is the message as it arrives.
	submit := func(name, data string) (string, bool) {
		t.Helper()
		data = strings.TrimRight(data, "\n")
		p := filepath.Join(dir, name+".eml")
		os.WriteFile(p, []byte(data), 0o600)
		return Swaks(t, r.SwaksArgs("--to", strings.SplitN(strings.SplitN(data, "\nTo: ", 2)[1], "\n", 2)[0], "--data", "@"+p)...)
	}
	outboxCopy := func(id string) string {
		t.Helper()
		var found string
		testutil.WaitWithin(t, 20*time.Second, "the copy of "+id+" in the outbox", func() bool {
			for _, m := range r.Outbox(t) {
				if strings.Contains(m, "<"+id+"@practice.example>") {
					found = m
					return true
				}
			}
			return false
		})
		return found
	}
	pgpBlock := func(m string) string {
		t.Helper()
		i, j := strings.Index(m, "-----BEGIN PGP MESSAGE-----"), strings.Index(m, "-----END PGP MESSAGE-----")
		if i < 0 || j < 0 {
			t.Fatalf("not encrypted:\n%s", m)
		}
		return m[i:j+len("-----END PGP MESSAGE-----")] + "\n"
	}
	bodyOf := func(m string) string {
		_, b, _ := strings.Cut(m, "\r\n\r\n")
		return b
	}

	// Fake PGP/MIME: the second part is text in clear.
	fakePGP := header("key@client.example", "fake-pgp") +
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"enc\"\n\n" +
		"--enc\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n\n" +
		"--enc\nContent-Type: text/plain\n\nFAKE-PGP-MARKER the session notes, in clear\n--enc--\n"
	if out, ok := submit("fake-pgp", fakePGP); !ok {
		t.Fatalf("fake PGP/MIME refused:\n%s", out)
	}
	m := outboxCopy("fake-pgp")
	if strings.Contains(m, "FAKE-PGP-MARKER") {
		t.Fatalf("the fake PGP/MIME reached the outbox in clear:\n%s", m)
	}
	os.WriteFile(filepath.Join(dir, "fake-pgp.asc"), []byte(pgpBlock(m)), 0o600)
	plain := run(t, dir, "gpg", "--homedir", "client", "--batch", "--decrypt", "fake-pgp.asc")
	if !strings.Contains(plain, "FAKE-PGP-MARKER") || !strings.Contains(plain, "Notice of Confidentiality: e2e.") {
		t.Errorf("gpg: the decrypted fake PGP/MIME lacks the text or the notice:\n%s", plain)
	}

	// Fake S/MIME: "enveloped data" that is text in base64.
	smimeText := base64.StdEncoding.EncodeToString([]byte("FAKE-SMIME-MARKER the session notes, in clear"))
	fakeSMIME := header("key@client.example", "fake-smime") +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\nContent-Transfer-Encoding: base64\n\n" + smimeText + "\n"
	if out, ok := submit("fake-smime", fakeSMIME); !ok {
		t.Fatalf("fake S/MIME refused:\n%s", out)
	}
	m = outboxCopy("fake-smime")
	if strings.Contains(m, smimeText) {
		t.Fatalf("the fake S/MIME reached the outbox in clear:\n%s", m)
	}
	os.WriteFile(filepath.Join(dir, "fake-smime.asc"), []byte(pgpBlock(m)), 0o600)
	plain = run(t, dir, "sq", "decrypt", "--recipient-key", secret, "fake-smime.asc")
	if !strings.Contains(plain, smimeText) || !strings.Contains(plain, "Notice of Confidentiality: e2e.") {
		t.Errorf("sq: the decrypted fake S/MIME lacks the text or the notice:\n%s", plain)
	}

	// Real PGP/MIME, made by gpg: passed through byte for byte.
	os.WriteFile(filepath.Join(dir, "inner.txt"), []byte("Content-Type: text/plain; charset=us-ascii\r\n\r\nREAL-PGP-MARKER\r\n"), 0o600)
	run(t, dir, "gpg", "--homedir", "client", "--batch", "--trust-model", "always", "--armor", "--output", "inner.asc", "--encrypt", "-r", "key@client.example", "inner.txt")
	armored, _ := os.ReadFile(filepath.Join(dir, "inner.asc"))
	realBody := "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\n" +
		"--enc\nContent-Type: application/pgp-encrypted\nContent-Description: PGP/MIME version identification\n\nVersion: 1\n\n" +
		"--enc\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\nContent-Description: OpenPGP encrypted message\n" +
		"Content-Disposition: inline; filename=\"encrypted.asc\"\n\n" + string(armored) + "\n--enc--\n"
	realPGP := header("key@client.example", "real-pgp") +
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"enc\"\n\n" + realBody
	if out, ok := submit("real-pgp", realPGP); !ok {
		t.Fatalf("real PGP/MIME refused:\n%s", out)
	}
	m = outboxCopy("real-pgp")
	if got, want := bodyOf(m), strings.ReplaceAll(strings.TrimRight(realBody, "\n"), "\n", "\r\n")+"\r\n"; got != want {
		t.Fatalf("the real PGP/MIME was altered:\n%s\nwant the body:\n%s", got, want)
	}
	if !strings.Contains(m, "Subject: notes real-pgp") {
		t.Errorf("the real PGP/MIME's header was altered:\n%s", m)
	}

	// Real S/MIME, made by openssl: passed through byte for byte.
	run(t, dir, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "smime-key.pem", "-out", "smime-cert.pem",
		"-days", "2", "-subj", "/CN=key@client.example")
	os.WriteFile(filepath.Join(dir, "smime-in.txt"), []byte("Content-Type: text/plain\r\n\r\nREAL-SMIME-MARKER\r\n"), 0o600)
	run(t, dir, "openssl", "cms", "-encrypt", "-aes256", "-in", "smime-in.txt", "-out", "smime.eml", "smime-cert.pem")
	smime, _ := os.ReadFile(filepath.Join(dir, "smime.eml"))
	smimeHead, smimeBody, _ := strings.Cut(strings.ReplaceAll(string(smime), "\r\n", "\n"), "\n\n")
	smimeHead = strings.Replace(smimeHead, "MIME-Version: 1.0\n", "", 1)
	realSMIME := header("key@client.example", "real-smime") + smimeHead + "\n\n" + smimeBody
	if out, ok := submit("real-smime", realSMIME); !ok {
		t.Fatalf("real S/MIME refused:\n%s", out)
	}
	m = outboxCopy("real-smime")
	if got, want := bodyOf(m), strings.ReplaceAll(strings.TrimRight(smimeBody, "\n"), "\n", "\r\n")+"\r\n"; got != want {
		t.Fatalf("the real S/MIME was altered:\n%s\nwant the body:\n%s", got, want)
	}
	os.WriteFile(filepath.Join(dir, "smime-out.eml"), []byte(m), 0o600)
	if out := run(t, dir, "openssl", "cms", "-decrypt", "-in", "smime-out.eml", "-inkey", "smime-key.pem", "-recip", "smime-cert.pem"); !strings.Contains(out, "REAL-SMIME-MARKER") {
		t.Errorf("openssl cannot open the S/MIME that went out:\n%s", out)
	}

	// A forwarded message with an SSN, to a consented client.
	forward := header("consented@client.example", "forward") +
		"Content-Type: multipart/mixed; boundary=\"fw\"\n\n--fw\nContent-Type: text/plain\n\nSee the message below.\n" +
		"--fw\nContent-Type: message/rfc822\nContent-Disposition: attachment; filename=\"notes.eml\"\n\n" +
		"From: colleague@practice.example\nSubject: billing\n\nThe SSN on file is 123-45-6789.\n\n--fw--\n"
	out, ok := submit("forward", forward)
	if ok || !strings.Contains(out, "550 5.7.1 Nothing was sent to anybody. This message contains what looks like a US Social Security number") || !strings.Contains(out, "(rule us-ssn; unencrypted to <consented@client.example>) (ref ") {
		t.Errorf("a forwarded SSN: want 550 5.7.1 with the rule's reply:\n%s", out)
	}

	// A multipart message without its closing boundary: permanent.
	cut := header("colleague@practice.example", "cut") +
		"Content-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: text/plain\n\nhello\n" +
		"--m\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n"
	out, ok = submit("cut", cut)
	if ok || !strings.Contains(out, "554 5.6.0 Nothing was sent to anybody. The message is damaged: it ends inside a part: a closing MIME boundary is missing") || strings.Contains(out, "451") {
		t.Errorf("no closing boundary: want 554 5.6.0, never 451:\n%s", out)
	}

	// The record: what really happened to each.
	exportDir := filepath.Join(t.TempDir(), "export")
	if stdout, stderr, code := r.Run(t, "", "archive", "export", "--key", filepath.Join(r.DataDir, "archive-private-key.asc"), "--out", exportDir); code != 0 {
		t.Fatalf("archive export: exit %d\n%s%s", code, stdout, stderr)
	}
	raw, err := os.ReadFile(filepath.Join(exportDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var man manifestWithReasons
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ reason, eml string }{
		"fake-pgp":   {"encrypted to OpenPGP key", "FAKE-PGP-MARKER"},
		"fake-smime": {"encrypted to OpenPGP key", smimeText},
		"real-pgp":   {"already encrypted by the sender's mail program (PGP/MIME)", "-----BEGIN PGP MESSAGE-----"},
		"real-smime": {"already encrypted by the sender's mail program (S/MIME)", "application/pkcs7-mime"},
	}
	seen := 0
	for _, msg := range man.Messages {
		id := strings.TrimSuffix(strings.Trim(msg.MessageID, "<>"), "@practice.example")
		w, ok := want[id]
		if !ok {
			continue
		}
		seen++
		if len(msg.Recipients) != 1 || msg.Recipients[0].Protection != "encrypted" || !strings.Contains(msg.Recipients[0].Reason, w.reason) {
			t.Errorf("%s: recorded as %+v, want encrypted, %q", id, msg.Recipients, w.reason)
		}
		eml, _ := os.ReadFile(filepath.Join(exportDir, msg.File))
		if !strings.Contains(string(eml), w.eml) {
			t.Errorf("%s: the recorded message lacks %q:\n%s", id, w.eml, eml)
		}
		if strings.HasPrefix(id, "fake") && !strings.Contains(string(eml), "Notice of Confidentiality: e2e.") {
			t.Errorf("%s: the record is not the message with the notice that sealpost encrypted:\n%s", id, eml)
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of the %d messages in the export", seen, len(want))
	}
}
