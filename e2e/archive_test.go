package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// exportManifest is the part of manifest.json the tests read.
type exportManifest struct {
	Archive struct {
		ChainHeadSeq uint64 `json:"chain_head_seq"`
		ChainHead    string `json:"chain_head"`
		Verified     bool   `json:"verified"`
	} `json:"archive"`
	Messages []struct {
		ID         string `json:"id"`
		Subject    string `json:"subject"`
		MessageID  string `json:"message_id"`
		File       string `json:"file"`
		Recipients []struct {
			Address    string `json:"address"`
			Protection string `json:"protection"`
			Delivery   []struct {
				Status string `json:"status"`
			} `json:"delivery"`
		} `json:"recipients"`
	} `json:"messages"`
	Refusals []struct {
		Recipient string `json:"recipient"`
	} `json:"refusals"`
	Consent []struct {
		Kind string `json:"kind"`
	} `json:"consent_history"`
}

// export runs sealpost archive export and reads the manifest.
func (r *Relay) export(t *testing.T) (string, exportManifest) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export")
	stdout, stderr, code := r.Run(t, "", "archive", "export", "--verify", "--key", filepath.Join(r.DataDir, "archive-private-key.asc"), "--out", out)
	if code != 0 {
		t.Fatalf("archive export: exit %d\n%s%s", code, stdout, stderr)
	}
	var m exportManifest
	b, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return out, m
}

// TestArchiveExport: a few hundred messages, a refusal and a consent go
// into the archive; `archive verify` passes; the export checks with
// `sha256sum -c`, every .eml parses, and index.html shows the same rows in
// a real browser.
func TestArchiveExport(t *testing.T) {
	testutil.RequireTools(t, "sha256sum", "chromium")
	r := StartRelay(t, RelayOptions{})
	r.Run(t, "", "consent", "add", "anna@client.example", "--evidence", "intake form", "--date", "2026-01-02", "--name", "Chart 1")
	load := &Load{Addr: r.Submission, CAFile: r.CA, User: User, Pass: Password, From: From,
		To: "anna@client.example", Sessions: 4, PerSession: 50, Prefix: "exp"}
	load.Run(context.Background(), 300)
	if n := len(load.Acked()); n != 300 {
		t.Fatalf("%d of 300 accepted: %v", n, load.Errors())
	}
	if out, ok := Swaks(t, r.SwaksArgs("--to", "stranger@client.example")...); ok {
		t.Fatalf("a recipient without consent was accepted:\n%s", out)
	}
	testutil.WaitWithin(t, 60*time.Second, "the queue to drain", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list")
		return strings.Contains(out, "empty")
	})
	r.Stop(t) // the consent sync and the last events are written by now

	stdout, stderr, code := r.Run(t, "", "archive", "verify")
	if code != 0 || !strings.Contains(stdout, "The archive verifies") {
		t.Fatalf("archive verify: exit %d\n%s%s", code, stdout, stderr)
	}
	out, m := r.export(t)
	if !m.Archive.Verified || len(m.Messages) != 300 || len(m.Refusals) != 1 || len(m.Consent) != 1 {
		t.Log(r.Logs.String())
		t.Fatalf("manifest: verified %v, %d messages, %d refusals, %d consent events", m.Archive.Verified, len(m.Messages), len(m.Refusals), len(m.Consent))
	}
	// The export's chain head is still in the chain, unchanged; a head the
	// chain never had is not.
	if stdout, stderr, code := r.Run(t, "", "archive", "verify", "--expect-manifest", filepath.Join(out, "manifest.json")); code != 0 || !strings.Contains(stdout, "seen earlier are in it, unchanged") {
		t.Errorf("verify --expect-manifest: exit %d\n%s%s", code, stdout, stderr)
	}
	if stdout, _, code := r.Run(t, "", "archive", "verify", "--expect", fmt.Sprintf("%d:%s", m.Archive.ChainHeadSeq+5, strings.Repeat("0", 64))); code != 1 || !strings.Contains(stdout, "records were removed from the end") {
		t.Errorf("verify --expect beyond the head: exit %d\n%s", code, stdout)
	}
	sum := exec.Command("sha256sum", "--quiet", "-c", "SHA256SUMS")
	sum.Dir = out
	if b, err := sum.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, b)
	}
	for _, msg := range m.Messages {
		b, err := os.ReadFile(filepath.Join(out, msg.File))
		if err != nil {
			t.Fatal(err)
		}
		e, err := message.Read(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s does not parse: %v", msg.File, err)
		}
		body, _ := io.ReadAll(e.Body)
		if e.Header.Get("Subject") != msg.Subject || !strings.Contains(string(body), "Notice of Confidentiality: e2e.") {
			t.Fatalf("%s: subject %q (manifest %q) or no notice", msg.File, e.Header.Get("Subject"), msg.Subject)
		}
		r0 := msg.Recipients[0]
		if r0.Protection != "consented" || len(r0.Delivery) == 0 || r0.Delivery[len(r0.Delivery)-1].Status != "delivered" {
			t.Fatalf("%s: recipient record %+v", msg.File, r0)
		}
	}
	// The page renders in a real browser, with a card per message.
	dom, err := exec.Command("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+filepath.Join(out, "index.html")).Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	list := string(dom)
	list = list[strings.Index(list, `<div id="message-list">`):]
	list = list[:strings.Index(list, `<p id="no-match"`)]
	if cards := strings.Count(list, `<article class="msg"`); cards != len(m.Messages) {
		t.Errorf("index.html shows %d messages, the manifest has %d", cards, len(m.Messages))
	}
	if !strings.Contains(list, m.Messages[0].Subject) {
		t.Errorf("index.html lacks the subject %q", m.Messages[0].Subject)
	}
}

// TestArchiveFullDisk: the archive on a small tmpfs fills up; submissions
// get 452 and nothing is queued or half-written; when space returns the
// relay accepts again without a restart, and the archive verifies.
func TestArchiveFullDisk(t *testing.T) {
	testutil.RequireTools(t, "mount", "umount")
	testutil.RequireRoot(t, "mount a small tmpfs as the archive folder")
	r := StartRelay(t, RelayOptions{})
	r.Stop(t)
	adir := filepath.Join(r.DataDir, "archive")
	keep := t.TempDir()
	// Move the archive onto a 1 MiB tmpfs.
	exec.Command("cp", "-a", adir+"/.", keep).Run()
	os.RemoveAll(adir)
	os.MkdirAll(adir, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", adir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", adir).Run() })
	exec.Command("cp", "-a", keep+"/.", adir).Run()
	r.Start(t)

	big := strings.Repeat(strings.Repeat("0123456789abcdef", 4)+"\n", 1024) // 64 KiB per message
	var sawFull bool
	for i := 0; i < 40 && !sawFull; i++ {
		out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--body", big)...)
		if !ok {
			if !strings.Contains(out, "452 4.3.1") {
				t.Fatalf("a full archive must answer 452 4.3.1:\n%s", out)
			}
			sawFull = true
		}
	}
	if !sawFull {
		t.Fatal("the tmpfs never filled up")
	}
	// What was refused is nowhere; what was accepted is delivered.
	testutil.WaitWithin(t, 30*time.Second, "the queue to drain", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list")
		return strings.Contains(out, "empty")
	})
	accepted := len(r.Outbox(t))
	// Space returns: the tmpfs grows.
	if out, err := exec.Command("mount", "-o", "remount,size=16m", adir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v\n%s", err, out)
	}
	if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--body", "after the disk was freed")...); !ok {
		t.Fatalf("no recovery after space returned:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "the message in the outbox", func() bool { return len(r.Outbox(t)) == accepted+1 })
	r.Stop(t)
	if stdout, _, code := r.Run(t, "", "archive", "verify"); code != 0 {
		t.Fatalf("archive verify after a full disk:\n%s", stdout)
	}
	_, m := r.export(t)
	if len(m.Messages) != accepted+1 {
		t.Errorf("archive holds %d messages, %d were accepted", len(m.Messages), accepted+1)
	}
}

// TestArchiveKeyChange: the practice changes its archive key (a key made
// with GnuPG). Records before and after stay readable: an export given both
// keys has every message; given only the old key it stops and names the
// record it cannot open.
func TestArchiveKeyChange(t *testing.T) {
	testutil.RequireTools(t, "swaks", "gpg")
	r := StartRelay(t, RelayOptions{})
	send := func(marker string) {
		t.Helper()
		if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--header", "Subject: "+marker, "--body", marker)...); !ok {
			t.Fatalf("swaks: %s", out)
		}
	}
	send("BEFORE-THE-CHANGE")

	dir := t.TempDir()
	newPub := gpgKey(t, dir, "archive-b", "Archive B <archive-b@practice.example>", "future-default", "never")
	newPriv := filepath.Join(dir, "archive-b-private.asc")
	os.WriteFile(newPriv, []byte(run(t, dir, "gpg", "--homedir", "archive-b", "--batch", "--armor", "--export-secret-keys")), 0o600)
	r.Stop(t)
	cfg, _ := os.ReadFile(r.Config)
	os.WriteFile(r.Config, append(cfg, fmt.Sprintf("\n[archive]\npublic_key = %q\n", newPub)...), 0o600)
	r.Start(t)
	send("AFTER-THE-CHANGE")

	oldPriv := filepath.Join(r.DataDir, "archive-private-key.asc")
	out := filepath.Join(t.TempDir(), "old-key-only")
	if _, stderr, code := r.Run(t, "", "archive", "export", "--key", oldPriv, "--out", out); code == 0 || !strings.Contains(stderr, "record ") {
		t.Errorf("export with the old key only: exit %d, %q; want a failure naming the record", code, stderr)
	}
	out = filepath.Join(t.TempDir(), "both-keys")
	if stdout, stderr, code := r.Run(t, "", "archive", "export", "--key", oldPriv, "--key", newPriv, "--out", out); code != 0 {
		t.Fatalf("export with both keys: exit %d\n%s%s", code, stdout, stderr)
	}
	emls, _ := filepath.Glob(filepath.Join(out, "messages", "*.eml"))
	var all strings.Builder
	for _, f := range emls {
		b, _ := os.ReadFile(f)
		all.Write(b)
	}
	if len(emls) != 2 || !strings.Contains(all.String(), "BEFORE-THE-CHANGE") || !strings.Contains(all.String(), "AFTER-THE-CHANGE") {
		t.Errorf("export with both keys: %d messages, want the one from before the change and the one after", len(emls))
	}
}

// TestArchiveKeysWithPassphrases: the archive key is changed once, and
// both keys are GnuPG's, each protected by its own passphrase (what an
// auditor keeps offline). An export given both keys and both passphrase
// files opens every record; with one passphrase missing it says which key
// it could not open.
func TestArchiveKeysWithPassphrases(t *testing.T) {
	testutil.RequireTools(t, "gpg", "swaks")
	dir := t.TempDir()
	type key struct{ pub, sec, pp string }
	makeKey := func(name, passphrase string) key {
		home := filepath.Join(dir, name)
		os.MkdirAll(home, 0o700)
		gpg := func(args ...string) []byte {
			cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase}, args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("gpg %v: %v\n%s", args, err, stderr.String())
			}
			return out
		}
		gpg("--quick-gen-key", "Archive "+name+" <archive@practice.example>", "future-default", "default", "never")
		k := key{pub: home + ".pub.asc", sec: home + ".sec.asc", pp: home + ".passphrase"}
		os.WriteFile(k.pub, gpg("--armor", "--export"), 0o644)
		os.WriteFile(k.sec, gpg("--armor", "--export-secret-keys"), 0o600)
		os.WriteFile(k.pp, []byte(passphrase+"\n"), 0o600)
		return k
	}
	first, second := makeKey("first", "first key's passphrase"), makeKey("second", "second key's passphrase")

	r := StartRelay(t, RelayOptions{Sections: fmt.Sprintf("[archive]\npublic_key = %q\n", first.pub)})
	send := func(subject string) {
		if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--header", "Subject: "+subject)...); !ok {
			t.Fatalf("swaks: %s", out)
		}
	}
	send("under the first key")
	r.Stop(t)
	cfg, _ := os.ReadFile(r.Config)
	os.WriteFile(r.Config, bytes.Replace(cfg, []byte(first.pub), []byte(second.pub), 1), 0o600)
	r.Start(t)
	send("under the second key")

	export := func(args ...string) (string, string, int) {
		out := filepath.Join(t.TempDir(), "export")
		_, stderr, code := r.Run(t, "", append([]string{"archive", "export", "--out", out}, args...)...)
		return out, stderr, code
	}
	out, stderr, code := export("--key", first.sec, "--key", second.sec, "--passphrase-file", first.pp, "--passphrase-file", second.pp)
	if code != 0 {
		t.Fatalf("export with both keys and both passphrases: exit %d\n%s", code, stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m exportManifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, msg := range m.Messages {
		subjects = append(subjects, msg.Subject)
	}
	for _, want := range []string{"under the first key", "under the second key"} {
		if !strings.Contains(strings.Join(subjects, "\n"), want) {
			t.Errorf("the export lacks %q; it has %q", want, subjects)
		}
	}

	_, stderr, code = export("--key", first.sec, "--key", second.sec, "--passphrase-file", first.pp)
	if code == 0 || !strings.Contains(stderr, second.sec) || !strings.Contains(stderr, "wrong passphrase") {
		t.Errorf("export without the second key's passphrase: exit %d, want a failure naming %s and a wrong passphrase:\n%s", code, second.sec, stderr)
	}
}
