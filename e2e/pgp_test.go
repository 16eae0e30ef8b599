package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// run runs a command and fails the test with its output when it fails.
func run(t testing.TB, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String() + errb.String()
}

// gpgKey makes a key in a GnuPG home of its own and exports its public half.
func gpgKey(t testing.TB, dir, home, uid, algo, expire string, extra ...string) string {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, home), 0o700)
	args := append([]string{"--homedir", home, "--batch", "--passphrase", ""}, extra...)
	run(t, dir, "gpg", append(args, "--quick-gen-key", uid, algo, "default", expire)...)
	if strings.HasPrefix(algo, "rsa") {
		// An RSA primary key only certifies and signs: add the encryption
		// subkey, as gpg --full-generate-key would.
		var fpr string
		for _, line := range strings.Split(run(t, dir, "gpg", "--homedir", home, "--with-colons", "--list-keys"), "\n") {
			if f := strings.Split(line, ":"); f[0] == "fpr" && fpr == "" {
				fpr = f[9]
			}
		}
		run(t, dir, "gpg", "--homedir", home, "--batch", "--passphrase", "", "--quick-add-key", fpr, algo, "encr", expire)
	}
	pub := filepath.Join(dir, home+".asc")
	out := run(t, dir, "gpg", "--homedir", home, "--armor", "--export")
	os.WriteFile(pub, []byte(out[:strings.Index(out, "-----END PGP PUBLIC KEY BLOCK-----")+len("-----END PGP PUBLIC KEY BLOCK-----")]+"\n"), 0o644)
	return pub
}

// TestEncryptedThroughRelay: keys made by GnuPG (RSA 3072 and Curve25519),
// Sequoia and RNP (Thunderbird's OpenPGP engine) are imported with `sealpost
// keys import`; a message submitted with swaks goes through the relay to a
// real Postfix, and each tool decrypts the copy the provider received with
// its own secret key alone, finds the notice and the real subject inside,
// and verifies the practice's signature. Outside, the subject is "...".
func TestEncryptedThroughRelay(t *testing.T) {
	testutil.RequireTools(t, "gpg", "sq", "rnp", "rnpkeys")
	p := StartPostfix(t, PostfixOptions{SASL: true})
	dir := t.TempDir()

	// The practice key (GnuPG, Curve25519) signs and is encrypted to.
	practicePub := gpgKey(t, dir, "practice", "Practice <practice@practice.example>", "future-default", "never")
	practiceKey := filepath.Join(dir, "practice.key")
	out := run(t, dir, "gpg", "--homedir", "practice", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--armor", "--export-secret-keys")
	os.WriteFile(practiceKey, []byte(out), 0o600)

	rsaPub := gpgKey(t, dir, "gpgrsa", "RSA Client <rsa@client.example>", "rsa3072", "never")
	cvPub := gpgKey(t, dir, "gpgcv", "CV Client <cv@client.example>", "future-default", "never")
	run(t, dir, "sq", "key", "generate", "--userid", "SQ Client <sq@client.example>", "--export", "sq.key")
	run(t, dir, "sq", "key", "extract-cert", "--output", "sq.cert", "sq.key")
	os.MkdirAll(filepath.Join(dir, "rnp"), 0o700)
	run(t, dir, "rnpkeys", "--generate-key", "--userid", "rnp@client.example", "--password", "", "--homedir", "rnp")
	rnpPub := run(t, dir, "rnpkeys", "--export-key", "rnp@client.example", "--homedir", "rnp")
	os.WriteFile(filepath.Join(dir, "rnp.asc"), []byte(rnpPub), 0o644)

	// Keys that must not be used: expired, revoked, and for another address.
	expiredPub := gpgKey(t, dir, "expired", "Old <expired@client.example>", "future-default", "1y", "--faked-system-time", "20200101T000000")
	revokedPub := gpgKey(t, dir, "revoked", "Gone <revoked@client.example>", "future-default", "never")
	revs, _ := filepath.Glob(filepath.Join(dir, "revoked", "openpgp-revocs.d", "*.rev"))
	revData, _ := os.ReadFile(revs[0])
	revFile := filepath.Join(dir, "revoked.rev")
	os.WriteFile(revFile, []byte(strings.Replace(string(revData), ":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----", 1)), 0o644)
	otherPub := gpgKey(t, dir, "other", "Other <other@client.example>", "future-default", "never")

	r := StartRelay(t, RelayOptions{Upstream: p, Sections: "[pgp]\npractice_key = \"" + practiceKey + "\"\n"})
	for _, f := range []string{rsaPub, cvPub, filepath.Join(dir, "sq.cert"), filepath.Join(dir, "rnp.asc"), expiredPub, revokedPub, otherPub, revFile} {
		if stdout, stderr, code := r.Run(t, "", "keys", "import", f); code != 0 {
			t.Fatalf("keys import %s: exit %d\n%s%s", f, code, stdout, stderr)
		}
	}
	list, _, _ := r.Run(t, "", "keys", "list")
	for _, want := range []string{"expired (expired on 2020-12-31)", "revoked", "usable"} {
		if !strings.Contains(list, want) {
			t.Errorf("keys list lacks %q:\n%s", want, list)
		}
	}

	holders := []string{"rsa@client.example", "cv@client.example", "sq@client.example", "rnp@client.example"}
	// Long enough for the encrypted data to span several 64 KiB chunks.
	body := filepath.Join(dir, "body.txt")
	var notes strings.Builder
	notes.WriteString("The notes are below.\r\n")
	for i := 0; notes.Len() < 200<<10; i++ {
		fmt.Fprintf(&notes, "%d. what we talked about, and what to try before next time\r\n", i)
	}
	notes.WriteString("END-OF-NOTES\r\n")
	os.WriteFile(body, []byte(notes.String()), 0o600)
	if out, ok := Swaks(t, r.SwaksArgs("--to", strings.Join(holders, ","), "--header", "Subject: Session notes for you", "--body", body)...); !ok {
		t.Fatalf("submission refused:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "the encrypted copy at the sink", func() bool { return len(p.Sink.Messages(t)) == 1 })
	m := p.Sink.Messages(t)[0]
	if got := append([]string(nil), m.To...); len(got) != 4 || !containsAll(got, holders) {
		t.Errorf("the encrypted copy went to %v", m.To)
	}
	if !strings.Contains(m.Data, "\nSubject: ...\n") || strings.Contains(m.Data, "Session notes") || strings.Contains(m.Data, "notes are below") {
		t.Fatalf("the provider can read the subject or the body:\n%s", m.Data)
	}
	i, j := strings.Index(m.Data, "-----BEGIN PGP MESSAGE-----"), strings.Index(m.Data, "-----END PGP MESSAGE-----")
	if i < 0 || j < 0 {
		t.Fatalf("no PGP/MIME in the provider's copy:\n%s", m.Data)
	}
	msg := filepath.Join(dir, "msg.asc")
	os.WriteFile(msg, []byte(m.Data[i:j+len("-----END PGP MESSAGE-----")]+"\n"), 0o644)

	checkPlain := func(tool, plain string) {
		for _, want := range []string{"Subject: Session notes for you", `protected-headers="v1"`, "The notes are below.", "END-OF-NOTES", "Notice of Confidentiality: e2e."} {
			if !strings.Contains(plain, want) {
				t.Errorf("%s: the decrypted message lacks %q:\n%.2000s", tool, want, plain)
			}
		}
	}
	for _, home := range []string{"gpgrsa", "gpgcv"} {
		run(t, dir, "gpg", "--homedir", home, "--batch", "--import", practicePub)
		out := run(t, dir, "gpg", "--homedir", home, "--batch", "--status-fd", "2", "--output", home+".out", "--decrypt", msg)
		plain, _ := os.ReadFile(filepath.Join(dir, home+".out"))
		checkPlain("gpg "+home, string(plain))
		if !strings.Contains(out, "[GNUPG:] GOODSIG") || !strings.Contains(out, "[GNUPG:] DECRYPTION_OKAY") {
			t.Errorf("gpg %s: no good signature or decryption:\n%s", home, out)
		}
	}
	sqOut := run(t, dir, "sq", "decrypt", "--recipient-key", "sq.key", "--signer-cert", practicePub, msg)
	checkPlain("sq", sqOut)
	if !strings.Contains(sqOut, "Good signature") {
		t.Errorf("sq: no good signature:\n%s", sqOut)
	}
	run(t, dir, "rnpkeys", "--homedir", "rnp", "--import", practicePub)
	rnpOut := run(t, dir, "rnp", "--homedir", "rnp", "--password", "", "--decrypt", msg, "--output", "-")
	checkPlain("rnp", rnpOut)
	if !strings.Contains(rnpOut, "Good signature") {
		t.Errorf("rnp: no good signature:\n%s", rnpOut)
	}

	// Unusable keys are not used: the reply says why.
	for rcpt, why := range map[string]string{
		"expired@client.example":  "The encryption key of <expired@client.example> can no longer be used (expired on 2020-12-31)",
		"revoked@client.example":  "The encryption key of <revoked@client.example> can no longer be used (revoked",
		"mismatch@client.example": "<mismatch@client.example> has no passphrase, encryption key or written consent",
	} {
		out, ok := Swaks(t, r.SwaksArgs("--to", rcpt)...)
		if ok || !strings.Contains(out, "550 5.7.1 Nothing was sent to anybody. ") || !strings.Contains(out, why) {
			t.Errorf("%s: want a refusal saying %q:\n%s", rcpt, why, out)
		}
	}
}

// TestMixedRecipients: one key holder, one consented client and one
// colleague: two copies, and nobody gets the copy meant for another decision.
func TestMixedRecipients(t *testing.T) {
	testutil.RequireTools(t, "gpg")
	p := StartPostfix(t, PostfixOptions{SASL: true})
	dir := t.TempDir()
	pub := gpgKey(t, dir, "client", "Key Holder <key@client.example>", "future-default", "never")
	r := StartRelay(t, RelayOptions{Upstream: p})
	r.Run(t, "", "keys", "import", pub)
	r.Run(t, "", "consent", "add", "consented@client.example", "--evidence", "form", "--date", "2026-01-02")
	to := "key@client.example,consented@client.example,colleague@practice.example"
	if out, ok := Swaks(t, r.SwaksArgs("--to", to, "--header", "Subject: Group", "--body", "For all three.")...); !ok {
		t.Fatalf("refused:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "two copies at the sink", func() bool { return len(p.Sink.Messages(t)) == 2 })
	for _, m := range p.Sink.Messages(t) {
		encrypted := strings.Contains(m.Data, "-----BEGIN PGP MESSAGE-----")
		rcpts := strings.Join(m.To, ",")
		switch {
		case encrypted && rcpts == "key@client.example":
		case !encrypted && rcpts == "consented@client.example,colleague@practice.example":
			if !strings.Contains(m.Data, "For all three.") || !strings.Contains(m.Data, "Notice of Confidentiality: e2e.") {
				t.Errorf("the clear copy lacks the body or the notice:\n%s", m.Data)
			}
		default:
			t.Errorf("a copy (encrypted %v) went to %s", encrypted, rcpts)
		}
		if !strings.Contains(m.Data, "To: "+strings.ReplaceAll(to, ",", ", ")) && !strings.Contains(m.Data, "To: "+to) {
			t.Errorf("the To header differs between copies:\n%s", m.Data)
		}
	}
}

func containsAll(have, want []string) bool {
	set := map[string]bool{}
	for _, h := range have {
		set[h] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	return true
}
