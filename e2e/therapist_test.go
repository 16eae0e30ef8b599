package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/rules/pgp"
)

// refIn finds the reference a refusal gave in a transcript.
var refIn = regexp.MustCompile(`\(ref ([2-9A-Z]{6})\)`)

// TestRefusalSpeaksToTheTherapist: swaks to a colleague and a client with
// nothing on file (swaks, unlike Thunderbird, goes on to DATA after a
// refused recipient). MAIL and RCPT get sealpost's sober replies; the
// client's refusal says nothing was sent and quotes a reference; DATA is
// refused naming the client, and nobody gets the message. The admin looks
// the reference up with `sealpost refusals show`, with the relay running
// and stopped; the log line and the export carry it.
func TestRefusalSpeaksToTheTherapist(t *testing.T) {
	r := StartRelay(t, RelayOptions{})
	out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example,carol@client.example", "--header", "Subject: Tuesday", "--body", "See you on Tuesday.")...)
	m := refIn.FindStringSubmatch(out)
	if ok || m == nil {
		t.Fatalf("want a refusal with a reference:\n%s", out)
	}
	ref := m[1]
	for _, want := range []string{
		"250 2.1.0 Sender <therapist@practice.example> OK",
		"250 2.1.5 Recipient <colleague@practice.example> OK: a colleague inside the practice",
		"550 5.7.1 Nothing was sent to anybody. <carol@client.example> has no passphrase, encryption key or written consent to unencrypted email on file; ask your admin to record one (ref " + ref + ")",
		"550 5.7.1 Nothing was sent to anybody, because <carol@client.example> (ref " + ref + ") was refused",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("swaks transcript lacks %q:\n%s", want, out)
		}
	}
	for _, never := range []string{"Roger", "make sure", "gets this", "sealpost consent", "queued as"} {
		if strings.Contains(out, never) {
			t.Errorf("the client was told %q:\n%s", never, out)
		}
	}
	if q, _, _ := r.Run(t, "", "queue", "list"); !strings.Contains(q, "empty") && strings.TrimSpace(q) != "" && strings.Contains(q, "colleague") {
		t.Errorf("something is queued:\n%s", q)
	}
	if n := len(r.Outbox(t)); n != 0 {
		t.Fatalf("%d copies in the outbox; nothing may be sent", n)
	}
	logs := r.Logs.String()
	if !strings.Contains(logs, "ref="+ref) || !strings.Contains(logs, "reason=nothing_on_file") || !strings.Contains(logs, "reason=partial_send") || strings.Contains(logs, "carol@client.example") {
		t.Errorf("the log lines lack the reference and the reasons, or name the client:\n%s", logs)
	}

	show := func(args ...string) string {
		t.Helper()
		stdout, stderr, code := r.Run(t, "", append([]string{"refusals", "show"}, args...)...)
		if code != 0 {
			t.Fatalf("refusals show %v: exit %d\n%s%s", args, code, stdout, stderr)
		}
		return stdout
	}
	got := show(strings.ToLower(ref))
	for _, want := range []string{"Refusal " + ref, "account therapist", "Reason: nothing_on_file", "Recipient: not in the consent registry",
		"sealpost consent passphrase ADDRESS", "--kind professional", "The whole message was refused at its end (DATA)", "Reason: partial_send"} {
		if !strings.Contains(got, want) {
			t.Errorf("refusals show lacks %q:\n%s", want, got)
		}
	}
	if got := show(ref, "--address", "carol@client.example"); !strings.Contains(got, "Recipient: carol@client.example") || !strings.Contains(got, "sealpost consent add carol@client.example") {
		t.Errorf("refusals show --address:\n%s", got)
	}
	if stdout, _, code := r.Run(t, "", "refusals", "list"); code != 0 || strings.Count(stdout, ref) != 2 {
		t.Errorf("refusals list: exit %d\n%s", code, stdout)
	}
	if _, stderr, code := r.Run(t, "", "refusals", "show", "AAAAAA"); code != 1 || !strings.Contains(stderr, "no refusal with reference AAAAAA") {
		t.Errorf("an unknown reference: exit %d %s", code, stderr)
	}
	r.Stop(t)
	if got := show(ref); !strings.Contains(got, "Reason: nothing_on_file") {
		t.Errorf("with the relay stopped:\n%s", got)
	}
	dir, _ := r.export(t)
	var manifest struct {
		Refusals []struct{ Ref, Code, Recipient string } `json:"refusals"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err := json.Unmarshal(b, &manifest); err != nil || len(manifest.Refusals) != 2 || manifest.Refusals[0].Ref != ref ||
		manifest.Refusals[0].Code != "nothing_on_file" || manifest.Refusals[0].Recipient != "carol@client.example" || manifest.Refusals[1].Code != "partial_send" {
		t.Errorf("the export's refusals: %+v %v", manifest.Refusals, err)
	}
}

// TestPartialSendsAllowed: with [policy] partial_sends = "allow" the
// refused client's reply says only they were left out, and the colleague
// gets the message.
func TestPartialSendsAllowed(t *testing.T) {
	r := StartRelay(t, RelayOptions{Sections: "[policy]\ninternal_domains = [\"practice.example\"]\nnotice = \"Notice of Confidentiality: e2e.\"\npartial_sends = \"allow\"\n"})
	out, _ := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example,carol@client.example", "--body", "See you on Tuesday.")...)
	if !strings.Contains(out, "550 5.7.1 Not sent to this recipient. <carol@client.example> has no passphrase") || !strings.Contains(out, "250 2.0.0 OK: queued as") {
		t.Fatalf("want carol left out and the message queued:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "the colleague's copy in the outbox", func() bool { return len(r.Outbox(t)) == 1 })
	if c := r.Outbox(t)[0]; !strings.Contains(c, "Delivered-To: colleague@practice.example") {
		t.Errorf("the copy went elsewhere:\n%s", c)
	}
}

// TestProfessionalRecipient: a clinic recorded as professional (a BAA) gets
// mail in clear with the notice, decided as professional and recorded so,
// apart from clients; once withdrawn it is refused in a therapist's words.
func TestProfessionalRecipient(t *testing.T) {
	r := StartRelay(t, RelayOptions{})
	if stdout, stderr, code := r.Run(t, "", "consent", "add", "--kind", "professional", "--domain", "clinic.example", "--name", "Clinic (referrals)",
		"--evidence", "BAA signed 2025-03-01", "--date", "2025-03-01"); code != 0 {
		t.Fatalf("consent add --kind professional: exit %d\n%s%s", code, stdout, stderr)
	}
	out, ok := Swaks(t, r.SwaksArgs("--to", "dr.lee@clinic.example", "--header", "Subject: Referral", "--body", "About our client.")...)
	if !ok || !strings.Contains(out, "250 2.1.5 Recipient <dr.lee@clinic.example> OK: unencrypted, to a professional recipient on file") {
		t.Fatalf("to a professional:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "the copy in the outbox", func() bool { return len(r.Outbox(t)) == 1 })
	if c := r.Outbox(t)[0]; !strings.Contains(c, "About our client.") || !strings.Contains(c, "Notice of Confidentiality: e2e.") {
		t.Errorf("the professional's copy lacks the text or the notice:\n%s", c)
	}
	list, _, _ := r.Run(t, "", "consent", "list")
	if clients, pros, _ := strings.Cut(list, "Professional recipients"); strings.Contains(clients, "clinic.example") || !strings.Contains(pros, "BAA signed 2025-03-01") {
		t.Errorf("consent list does not show the professional apart:\n%s", list)
	}
	if stdout, stderr, code := r.Run(t, "", "consent", "revoke", "--domain", "clinic.example", "--reason", "BAA ended"); code != 0 {
		t.Fatalf("consent revoke --domain: exit %d\n%s%s", code, stdout, stderr)
	}
	out, ok = Swaks(t, r.SwaksArgs("--to", "dr.lee@clinic.example")...)
	if ok || !strings.Contains(out, "550 5.7.1 Nothing was sent to anybody. <dr.lee@clinic.example> is no longer on file as a professional recipient") {
		t.Errorf("after the withdrawal:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "the delivery in the record", func() bool {
		q, _, _ := r.Run(t, "", "queue", "list", "--json")
		return strings.TrimSpace(q) == "[]"
	})
	r.Stop(t)
	dir, _ := r.export(t)
	var manifest struct {
		Messages []struct {
			Recipients []struct {
				Address    string                                   `json:"address"`
				Protection string                                   `json:"protection"`
				Consent    *struct{ Kind, Evidence, Domain string } `json:"consent"`
			} `json:"recipients"`
		} `json:"messages"`
		Consent []struct{ Kind, Domain string } `json:"consent_history"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err := json.Unmarshal(b, &manifest); err != nil || len(manifest.Messages) != 1 || len(manifest.Messages[0].Recipients) != 1 {
		t.Fatalf("manifest: %v\n%s", err, b)
	}
	rc := manifest.Messages[0].Recipients[0]
	if rc.Protection != "professional" || rc.Consent == nil || rc.Consent.Kind != "professional-given" || rc.Consent.Evidence != "BAA signed 2025-03-01" || rc.Consent.Domain != "clinic.example" {
		t.Errorf("the export's recipient: %+v %+v", rc, rc.Consent)
	}
	kinds := map[string]bool{}
	for _, ev := range manifest.Consent {
		kinds[ev.Kind] = true
	}
	if !kinds["professional-given"] || !kinds["professional-revoked"] || kinds["given"] {
		t.Errorf("the export's consent history: %+v", manifest.Consent)
	}
}

// TestAutocryptOnOutgoingCopies: with a practice key, copies that leave the
// practice carry an Autocrypt header for the sending address whose keydata
// is the practice key (go-crypto reads it, gpg imports it); a copy only to
// colleagues carries none.
func TestAutocryptOnOutgoingCopies(t *testing.T) {
	testutil.RequireTools(t, "gpg")
	dir := t.TempDir()
	practice := testutil.OpenPGPKey(t, "practice.example practice", "practice@practice.example")
	var priv bytes.Buffer
	w, _ := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	practice.SerializePrivateWithoutSigning(w, nil)
	w.Close()
	keyFile := filepath.Join(dir, "practice-key.asc")
	os.WriteFile(keyFile, priv.Bytes(), 0o600)
	r := StartRelay(t, RelayOptions{Sections: "[pgp]\npractice_key = \"" + keyFile + "\"\n"})
	if stdout, stderr, code := r.Run(t, "", "consent", "add", "anna@client.example", "--evidence", "consent form", "--date", "2026-01-05"); code != 0 {
		t.Fatalf("consent add: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, to := range []string{"colleague@practice.example", "anna@client.example"} {
		if out, ok := Swaks(t, r.SwaksArgs("--to", to, "--body", "Hello.")...); !ok {
			t.Fatalf("to %s:\n%s", to, out)
		}
	}
	testutil.WaitWithin(t, 30*time.Second, "two copies in the outbox", func() bool { return len(r.Outbox(t)) == 2 })
	for _, c := range r.Outbox(t) {
		h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(c)))
		if err != nil {
			t.Fatal(err)
		}
		colleague := strings.Contains(h.Get("Delivered-To"), "colleague@")
		keydata, offered := pgp.AutocryptKey(h, From)
		if colleague {
			if h.Has("Autocrypt") {
				t.Errorf("the colleague's copy carries an Autocrypt header")
			}
			continue
		}
		if !offered {
			t.Fatalf("the client's copy offers no key:\n%s", c)
		}
		el, err := openpgp.ReadKeyRing(bytes.NewReader(keydata))
		if err != nil || len(el) != 1 || pgp.Fingerprint(el[0]) != pgp.Fingerprint(practice) {
			t.Fatalf("keydata: %v, want the practice key %s", err, pgp.Fingerprint(practice))
		}
		os.WriteFile(filepath.Join(dir, "keydata.b64"), []byte(base64.StdEncoding.EncodeToString(keydata)), 0o600)
		home := filepath.Join(dir, "gnupg")
		os.Mkdir(home, 0o700)
		os.WriteFile(filepath.Join(dir, "keydata.pgp"), keydata, 0o600)
		out := run(t, dir, "gpg", "--homedir", home, "--batch", "--import", "keydata.pgp")
		list := run(t, dir, "gpg", "--homedir", home, "--batch", "--with-colons", "--list-keys")
		if !strings.Contains(list, pgp.Fingerprint(practice)) || !strings.Contains(list, "<therapist@practice.example>") {
			t.Errorf("gpg imported something else:\n%s\n%s", out, list)
		}
	}
}
