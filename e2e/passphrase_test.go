package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// TestPassphraseCommandsEndToEnd is the admin's side of sealed PDFs with the
// built binary: one client's passphrase made by --generate with a card,
// another's piped in; swaks sends to the first in To and the second as Bcc (an envelope
// recipient no header names); each outbox copy's message.pdf opens with qpdf
// with that client's passphrase only; consent list shows both sealed; after
// --remove the second is refused with the ways to fix it.
func TestPassphraseCommandsEndToEnd(t *testing.T) {
	testutil.RequireTools(t, "swaks", "qpdf", "pdftotext")
	const (
		anna  = "anna@client.example"
		ben   = "ben@client.example"
		piped = "harbor lantern copper quiet"
		body  = "See you on Tuesday at ten."
	)
	r := StartRelay(t, RelayOptions{Sections: "[sealed]\npractice_name = \"Lakeside Counselling\"\n"})
	card := filepath.Join(t.TempDir(), "anna-card.pdf")
	stdout, stderr, code := r.Run(t, "", "consent", "passphrase", anna, "--generate", "--card", card, "--by", "front desk")
	if code != 0 {
		t.Fatalf("consent passphrase --generate: exit %d\n%s%s", code, stdout, stderr)
	}
	generated := ""
	for _, line := range strings.Split(stdout, "\n") {
		if p, ok := strings.CutPrefix(line, "Passphrase: "); ok {
			generated = p
		}
	}
	if len(strings.Fields(generated)) != 6 || !strings.Contains(stdout, "will not be shown again") {
		t.Fatalf("--generate did not print six words once:\n%s", stdout)
	}
	if stdout, stderr, code := r.Run(t, piped+"\n", "consent", "passphrase", ben); code != 0 || strings.Contains(stdout+stderr, piped) {
		t.Fatalf("consent passphrase from stdin: exit %d (the output must not show it)\n%s%s", code, stdout, stderr)
	}

	if text := pdftotextOf(t, card); !strings.Contains(text, generated) || !strings.Contains(text, "Lakeside Counselling") {
		t.Errorf("the card lacks the passphrase or the practice's name:\n%s", text)
	}

	if out, ok := Swaks(t, r.SwaksArgs("--to", anna+","+ben, "--header", "To: <"+anna+">", "--header", "Subject: Tuesday", "--body", body)...); !ok {
		t.Fatalf("send to two sealed clients:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "two copies in the outbox", func() bool { return len(r.Outbox(t)) == 2 })
	passphrases := map[string]string{anna: generated, ben: piped}
	pdfSums := map[string]string{}
	for _, m := range r.Outbox(t) {
		to := outboxDeliveredTo(m)
		own, ok := passphrases[to]
		if !ok {
			t.Fatalf("a copy for %q:\n%.400s", to, m)
		}
		pdf := filepath.Join(t.TempDir(), "message.pdf")
		b := mimeAttachment(t, m, "message.pdf")
		if err := os.WriteFile(pdf, b, 0o600); err != nil {
			t.Fatal(err)
		}
		pdfSums[to] = fmt.Sprintf("%x", sha256.Sum256(b))
		for other, p := range passphrases {
			if other != to {
				if err := exec.Command("qpdf", "--decrypt", "--password="+p, pdf, filepath.Join(t.TempDir(), "x.pdf")).Run(); err == nil {
					t.Errorf("%s's copy opens with %s's passphrase", to, other)
				}
			}
		}
		if err := exec.Command("qpdf", "--decrypt", pdf, filepath.Join(t.TempDir(), "x.pdf")).Run(); err == nil {
			t.Errorf("%s's copy opens without a passphrase", to)
		}
		clear := filepath.Join(t.TempDir(), "clear.pdf")
		if out, err := exec.Command("qpdf", "--decrypt", "--password="+own, pdf, clear).CombinedOutput(); err != nil {
			t.Fatalf("%s's copy does not open with their passphrase: %v\n%s", to, err, out)
		}
		if text := pdftotextOf(t, clear); !strings.Contains(text, body) || !strings.Contains(text, "Tuesday") {
			t.Errorf("%s's PDF lacks the message:\n%s", to, text)
		}
	}

	stdout, _, _ = r.Run(t, "", "consent", "list")
	today := time.Now().Format("2006-01-02")
	for _, a := range []string{anna, ben} {
		if !listingLineHas(stdout, a, "yes, set "+today) {
			t.Errorf("consent list does not show %s sealed (yes, set %s):\n%s", a, today, stdout)
		}
	}
	if stdout, stderr, code := r.Run(t, "", "consent", "passphrase", ben, "--remove"); code != 0 || !strings.Contains(stdout, "Passphrase removed") {
		t.Fatalf("--remove: exit %d\n%s%s", code, stdout, stderr)
	}
	out, ok := Swaks(t, r.SwaksArgs("--to", ben, "--header", "Subject: Tuesday", "--body", body)...)
	if ok || !strings.Contains(out, "550 5.7.1 Nothing was sent to anybody. <"+ben+"> has no passphrase") || strings.Contains(out, "sealpost consent") {
		t.Errorf("after --remove, want a refusal naming the passphrase as a way:\n%s", out)
	}
	for _, secret := range []string{generated, piped} {
		if strings.Contains(r.Logs.String(), secret) {
			t.Error("a passphrase is in the relay's log")
		}
	}
	r.Stop(t) // a stopping relay copies the last registry events into the archive
	checkSealedExport(t, r, pdfSums, passphrases)
}

// checkSealedExport: what the README tells auditors holds: in the export,
// each sealed recipient has the protection sealed, the passphrase event the
// copy rested on, and the SHA-256 of the very message.pdf they were sent;
// the consent history has the passphrase events with who made them; no
// passphrase is anywhere in the export.
func checkSealedExport(t *testing.T, r *Relay, pdfSums, passphrases map[string]string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export")
	if stdout, stderr, code := r.Run(t, "", "archive", "export", "--key", filepath.Join(r.DataDir, "archive-private-key.asc"), "--out", out); code != 0 {
		t.Fatalf("archive export: exit %d\n%s%s", code, stdout, stderr)
	}
	raw, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Messages []struct {
			Recipients []struct {
				Address    string `json:"address"`
				Protection string `json:"protection"`
				SHA256     string `json:"sealed_pdf_sha256"`
				Consent    *struct {
					Kind string `json:"kind"`
				} `json:"consent"`
			} `json:"recipients"`
		} `json:"messages"`
		History []struct {
			Kind       string `json:"kind"`
			RecordedBy string `json:"recorded_by"`
		} `json:"consent_history"`
	}
	if err := json.Unmarshal(raw, &m); err != nil || len(m.Messages) != 1 {
		t.Fatalf("manifest.json: %v, %d messages, want 1", err, len(m.Messages))
	}
	for _, rc := range m.Messages[0].Recipients {
		if rc.Protection != "sealed" || rc.SHA256 != pdfSums[rc.Address] || rc.Consent == nil || rc.Consent.Kind != "passphrase-set" {
			t.Errorf("export of %s: protection %q, sealed_pdf_sha256 %q (the PDF sent: %q), consent %v",
				rc.Address, rc.Protection, rc.SHA256, pdfSums[rc.Address], rc.Consent)
		}
	}
	var history []string
	for _, ev := range m.History {
		history = append(history, ev.Kind+" by "+ev.RecordedBy)
	}
	user := recorderOf(t)
	if want := []string{"passphrase-set by front desk", "passphrase-set by " + user, "passphrase-removed by " + user}; !slices.Equal(history, want) {
		t.Errorf("the export's consent history is %q, want %q", history, want)
	}
	err = filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		for _, p := range passphrases {
			if bytes.Contains(b, []byte(p)) {
				t.Errorf("a passphrase is in the export's %s", path)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// recorderOf is who the registry's events name when --by is not given.
func recorderOf(t *testing.T) string {
	if s := os.Getenv("SUDO_USER"); s != "" {
		return s
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// outboxDeliveredTo is the outbox file's Delivered-To address.
func outboxDeliveredTo(m string) string {
	for _, line := range strings.Split(m, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Delivered-To: "); ok {
			return v
		}
		if line == "" {
			break
		}
	}
	return ""
}

// mimeAttachment returns the decoded body of the part named name, at any depth.
func mimeAttachment(t *testing.T, raw, name string) []byte {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var find func(h map[string][]string, body io.Reader) []byte
	find = func(h map[string][]string, body io.Reader) []byte {
		mt, params, _ := mime.ParseMediaType(mimeHeaderValue(h, "Content-Type"))
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err != nil {
					return nil
				}
				if b := find(p.Header, p); b != nil {
					return b
				}
			}
		}
		_, dp, _ := mime.ParseMediaType(mimeHeaderValue(h, "Content-Disposition"))
		if dp["filename"] != name && params["name"] != name {
			return nil
		}
		b, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return b
	}
	b := find(msg.Header, msg.Body)
	if b == nil {
		t.Fatalf("no attachment %s in:\n%.1500s", name, raw)
	}
	return b
}

func mimeHeaderValue(h map[string][]string, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// pdftotextOf is the PDF's text as pdftotext reads it, its whitespace folded.
func pdftotextOf(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("pdftotext", "-layout", path, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext %s: %v", path, err)
	}
	return strings.Join(strings.Fields(string(bytes.ToValidUTF8(out, nil))), " ")
}

// listingLineHas says whether one line of the listing has every word.
func listingLineHas(listing string, words ...string) bool {
	for _, line := range strings.Split(listing, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}
