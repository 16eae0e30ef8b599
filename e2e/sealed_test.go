package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"github.com/sealpost/sealpost/internal/testutil"
)

// setPassphrase records a client's passphrase with `sealpost consent
// passphrase` (one line on stdin) while the relay runs.
func (r *Relay) setPassphrase(t *testing.T, address, client, passphrase string) {
	t.Helper()
	if stdout, stderr, code := r.Run(t, passphrase+"\n", "consent", "passphrase", address, "--name", client); code != 0 {
		t.Fatalf("consent passphrase: exit %d\n%s%s", code, stdout, stderr)
	}
}

// attachment returns the decoded body of the part of msg named filename.
func attachment(t *testing.T, msg, filename string) []byte {
	t.Helper()
	e, err := message.Read(strings.NewReader(msg))
	if err != nil {
		t.Fatalf("the message does not parse: %v", err)
	}
	var found []byte
	err = e.Walk(func(path []int, part *message.Entity, err error) error {
		if err != nil {
			return err
		}
		if _, params, _ := part.Header.ContentDisposition(); params["filename"] == filename {
			found, err = io.ReadAll(part.Body)
		}
		return err
	})
	if err != nil || found == nil {
		t.Fatalf("no %s in the message (%v):\n%.3000s", filename, err, msg)
	}
	return found
}

// sealedManifest is what the sealed test reads of manifest.json.
type sealedManifest struct {
	Messages []struct {
		File       string `json:"file"`
		Recipients []struct {
			Address         string `json:"address"`
			Protection      string `json:"protection"`
			SealedPDFSHA256 string `json:"sealed_pdf_sha256"`
			Consent         *struct {
				Kind string `json:"kind"`
			} `json:"consent"`
			Delivery []struct {
				Status string `json:"status"`
			} `json:"delivery"`
		} `json:"recipients"`
	} `json:"messages"`
}

// TestSealedThroughRelay: one message from swaks to a key holder, a client
// with a passphrase on file, a consented client and a colleague. Each gets
// the copy their decision says, none crossing: the key holder PGP/MIME, the
// sealed client an outer message whose message.pdf qpdf reports as AES-256
// (R6) and opens with the passphrase alone (pdftotext shows the subject
// and text inside), the others the message with the notice. The export
// shows every decision, and the SHA-256 of the PDF that was sent.
func TestSealedThroughRelay(t *testing.T) {
	testutil.RequireTools(t, "swaks", "gpg", "qpdf", "pdftotext")
	const (
		keyHolder = "cv@client.example"
		sealed    = "sealed@client.example"
		consented = "anna@client.example"
		colleague = "colleague@practice.example"
		// poppler's command-line tools cut a password at 32 bytes
		// (pdftotext -upw), PDF readers do not: this one is shorter.
		passphrase = "maple orbit velvet canyon"
	)
	dir := t.TempDir()
	pub := gpgKey(t, dir, "gpgcv", "CV Client <"+keyHolder+">", "future-default", "never")
	r := StartRelay(t, RelayOptions{})
	if stdout, stderr, code := r.Run(t, "", "keys", "import", pub); code != 0 {
		t.Fatalf("keys import: exit %d\n%s%s", code, stdout, stderr)
	}
	if stdout, stderr, code := r.Run(t, "", "consent", "add", consented, "--evidence", "intake form", "--date", "2026-01-05", "--name", "Chart 1"); code != 0 {
		t.Fatalf("consent add: exit %d\n%s%s", code, stdout, stderr)
	}
	r.setPassphrase(t, sealed, "Chart 2", passphrase)

	body := filepath.Join(dir, "body.txt")
	os.WriteFile(body, []byte("See you on Tuesday. Καλημέρα, до встречи.\r\n"), 0o600)
	rcpts := strings.Join([]string{keyHolder, sealed, consented, colleague}, ",")
	if out, ok := Swaks(t, r.SwaksArgs("--to", rcpts, "--header", "Subject: Tuesday's session", "--body", body)...); !ok {
		t.Fatalf("submission refused:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "four copies in the outbox", func() bool { return len(r.Outbox(t)) == 4 })
	copies := map[string]string{}
	for _, m := range r.Outbox(t) {
		_, rest, _ := strings.Cut(m, "\r\nDelivered-To: ")
		rcpt, msg, _ := strings.Cut(rest, "\r\n")
		copies[rcpt] = msg
	}
	for _, rcpt := range []string{consented, colleague} {
		if c := copies[rcpt]; !strings.Contains(c, "See you on Tuesday.") || !strings.Contains(c, "Notice of Confidentiality: e2e.") || strings.Contains(c, "message.pdf") {
			t.Errorf("%s's copy is not the message with the notice:\n%s", rcpt, c)
		}
	}
	if c := copies[keyHolder]; !strings.Contains(c, "-----BEGIN PGP MESSAGE-----") || strings.Contains(c, "Tuesday") || strings.Contains(c, "message.pdf") {
		t.Errorf("the key holder's copy is not PGP/MIME alone:\n%s", c)
	}
	outer := copies[sealed]
	if !strings.Contains(outer, "Subject: Secure message from practice.example\r\n") || strings.Contains(outer, "Tuesday") || strings.Contains(outer, "BEGIN PGP") {
		t.Fatalf("the sealed client's outer message shows the subject or text, or is not theirs:\n%.3000s", outer)
	}
	pdf := attachment(t, outer, "message.pdf")
	pdfPath := filepath.Join(dir, "message.pdf")
	os.WriteFile(pdfPath, pdf, 0o600)
	enc := run(t, dir, "qpdf", "--show-encryption", "--password="+passphrase, pdfPath)
	if !strings.Contains(enc, "R = 6") || !strings.Contains(enc, "AESv3") {
		t.Errorf("qpdf --show-encryption:\n%s", enc)
	}
	if b, err := exec.Command("qpdf", "--decrypt", "--password=not the passphrase", pdfPath, filepath.Join(dir, "wrong.pdf")).CombinedOutput(); err == nil {
		t.Errorf("qpdf opened the PDF with a wrong passphrase:\n%s", b)
	}
	run(t, dir, "qpdf", "--decrypt", "--password="+passphrase, pdfPath, filepath.Join(dir, "open.pdf"))
	text := run(t, dir, "pdftotext", "-upw", passphrase, pdfPath, "-")
	for _, want := range []string{"Tuesday's session", "See you on Tuesday.", "Καλημέρα", "до встречи", "Notice of Confidentiality: e2e."} {
		if !strings.Contains(text, want) {
			t.Errorf("pdftotext shows no %q:\n%s", want, text)
		}
	}

	testutil.WaitWithin(t, 30*time.Second, "the queue to drain", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list")
		return strings.Contains(out, "empty")
	})
	r.Stop(t)
	out := filepath.Join(t.TempDir(), "export")
	if stdout, stderr, code := r.Run(t, "", "archive", "export", "--key", filepath.Join(r.DataDir, "archive-private-key.asc"), "--out", out); code != 0 {
		t.Fatalf("archive export: exit %d\n%s%s", code, stdout, stderr)
	}
	var m sealedManifest
	mb, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err := json.Unmarshal(mb, &m); err != nil || len(m.Messages) != 1 {
		t.Fatalf("manifest (%v):\n%s", err, mb)
	}
	sum := sha256.Sum256(pdf)
	want := map[string]string{keyHolder: "encrypted", sealed: "sealed", consented: "consented", colleague: "internal"}
	for _, rc := range m.Messages[0].Recipients {
		if want[rc.Address] != rc.Protection || len(rc.Delivery) == 0 || rc.Delivery[len(rc.Delivery)-1].Status != "delivered" {
			t.Errorf("%s: %s, delivery %+v; want %s, delivered", rc.Address, rc.Protection, rc.Delivery, want[rc.Address])
		}
		if (rc.Address == sealed) != (rc.SealedPDFSHA256 != "") {
			t.Errorf("%s: sealed_pdf_sha256 %q", rc.Address, rc.SealedPDFSHA256)
		}
		if rc.Address == sealed && (rc.SealedPDFSHA256 != hex.EncodeToString(sum[:]) || rc.Consent == nil || rc.Consent.Kind != "passphrase-set") {
			t.Errorf("the export records PDF %s on %+v; the client was sent %x", rc.SealedPDFSHA256, rc.Consent, sum)
		}
	}
	archived, _ := os.ReadFile(filepath.Join(out, m.Messages[0].File))
	if !bytes.Contains(archived, []byte("See you on Tuesday.")) {
		t.Errorf("the archive keeps not the message as the clients can read it:\n%s", archived)
	}
	for _, secret := range []string{passphrase, "maple orbit"} {
		if strings.Contains(r.Logs.String(), secret) || bytes.Contains(mb, []byte(secret)) {
			t.Fatalf("the passphrase is in the log or the export")
		}
	}
}
