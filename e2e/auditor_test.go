package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/sealpost/sealpost/internal/testutil"
)

// auditorCmd runs sealpost as an auditor does on their own machine: no
// configuration anywhere (SEALPOST_CONFIG names one that is only data_dir,
// as the auditor tried, and the default path is not read).
func auditorCmd(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(Sealpost(t), args...)
	cmd.Dir = dir
	cfg := filepath.Join(dir, "only-data-dir.toml")
	os.WriteFile(cfg, []byte("data_dir = \"copy\"\n"), 0o600)
	cmd.Env = append(os.Environ(), "SEALPOST_CONFIG="+cfg)
	return cmd
}

func auditorRun(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := auditorCmd(t, dir, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// treeState is every file under a folder: its mode, size, time and content.
func treeState(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		state := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			state += " " + hex.EncodeToString(sum[:])
		}
		out[rel] = state
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readOnlyMount makes a read-only view of dir (a read-only bind mount) and
// returns its path: a write through it fails, whoever tries.
func readOnlyMount(t *testing.T, dir string) string {
	t.Helper()
	testutil.RequireRoot(t, "bind-mount the auditor's copy read-only")
	testutil.RequireTools(t, "mount", "umount")
	mnt := filepath.Join(t.TempDir(), "ro")
	os.MkdirAll(mnt, 0o755)
	if out, err := exec.Command("mount", "--bind", dir, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount --bind: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	if out, err := exec.Command("mount", "-o", "remount,bind,ro", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -o remount,bind,ro: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(mnt, "probe"), nil, 0o600); err == nil {
		t.Fatal("the read-only mount takes writes")
	}
	return mnt
}

// TestAuditorCopy: an auditor with a copy of the archive folder and its
// head file, the archive's private key and no configuration verifies,
// exports (a client chosen by the name on file, found in the archive's own
// consent history) and reads the record in a mail client, with --archive
// alone, on a read-only mount; the copy is byte for byte what it was. The
// export then checks with gpg and sha256sum alone.
func TestAuditorCopy(t *testing.T) {
	testutil.RequireTools(t, "swaks", "gpg", "sha256sum")
	r := StartRelay(t, RelayOptions{})
	for _, c := range [][]string{
		{"consent", "add", "anna@client.example", "--evidence", "consent form v2", "--name", "Chart 17"},
		{"consent", "add", "ben@client.example", "--evidence", "consent form v2", "--name", "Chart 18"},
	} {
		if _, errOut, code := r.Run(t, "", c...); code != 0 {
			t.Fatal(errOut)
		}
	}
	for _, to := range []string{"anna@client.example", "ben@client.example", "anna@client.example"} {
		if out, ok := Swaks(t, r.SwaksArgs("--to", to, "--header", "Subject: For "+to, "--body", "Session notes.")...); !ok {
			t.Fatal(out)
		}
	}
	testutil.WaitWithin(t, 20*time.Second, "three messages delivered", func() bool { return len(r.Outbox(t)) == 3 })
	r.Stop(t) // its last act copies the consent events into the archive

	// The auditor's machine: a copy of archive/ and archive-head, and the key.
	home := t.TempDir()
	copyDir := filepath.Join(home, "copy")
	os.MkdirAll(copyDir, 0o755)
	for _, name := range []string{"archive-head", "archive"} {
		if out, err := exec.Command("cp", "-a", filepath.Join(r.DataDir, name), copyDir).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
	}
	key := filepath.Join(home, "archive-key.asc")
	b, _ := os.ReadFile(filepath.Join(r.DataDir, "archive-private-key.asc"))
	os.WriteFile(key, b, 0o600)
	before := treeState(t, copyDir)
	ro := readOnlyMount(t, copyDir)
	arch := filepath.Join(ro, "archive")

	out, errOut, code := auditorRun(t, home, "archive", "verify", "--archive", arch)
	if code != 0 || !strings.Contains(out, "The archive verifies:") || !strings.Contains(out, "OpenPGP fingerprint") {
		t.Fatalf("archive verify --archive: exit %d\n%s%s", code, out, errOut)
	}

	exp := filepath.Join(home, "export")
	out, errOut, code = auditorRun(t, home, "archive", "export", "--verify", "--archive", arch, "--key", key, "--out", exp, "--client", "Chart 17")
	if code != 0 {
		t.Fatalf("archive export --archive --client NAME: exit %d\n%s%s", code, out, errOut)
	}
	var man struct {
		Archive struct {
			Verified    bool   `json:"verified"`
			Fingerprint string `json:"seal_key_fingerprint"`
		} `json:"archive"`
		Filter struct {
			Clients    []string `json:"clients"`
			ClientName string   `json:"client_name"`
		} `json:"filter"`
		Messages []struct{ Subject string } `json:"messages"`
	}
	mb, _ := os.ReadFile(filepath.Join(exp, "manifest.json"))
	if err := json.Unmarshal(mb, &man); err != nil {
		t.Fatal(err)
	}
	if !man.Archive.Verified || len(man.Messages) != 2 || fmt.Sprint(man.Filter.Clients) != "[anna@client.example]" || man.Filter.ClientName != "Chart 17" {
		t.Errorf("the export of Chart 17: verified %v, %d messages, clients %v %q; want verified, Anna's 2", man.Archive.Verified, len(man.Messages), man.Filter.Clients, man.Filter.ClientName)
	}
	if !strings.Contains(out, man.Archive.Fingerprint) || !strings.Contains(out, "gpg --verify SHA256SUMS.asc SHA256SUMS") {
		t.Errorf("export does not say how to check it:\n%s", out)
	}
	// What the README tells the auditor, without sealpost.
	gh := filepath.Join(home, "gnupg")
	os.Mkdir(gh, 0o700)
	run(t, exp, "gpg", "--homedir", gh, "--batch", "--import", "seal-key.asc")
	fprs := run(t, exp, "gpg", "--homedir", gh, "--fingerprint", "sealpost archive seal key")
	if !strings.Contains(fprs, man.Archive.Fingerprint) {
		t.Errorf("gpg --fingerprint shows\n%s\nnot the fingerprint export printed, %s", fprs, man.Archive.Fingerprint)
	}
	if v := run(t, exp, "gpg", "--homedir", gh, "--batch", "--verify", "SHA256SUMS.asc", "SHA256SUMS"); !strings.Contains(v, "Good signature") {
		t.Errorf("gpg --verify:\n%s", v)
	}
	run(t, exp, "sha256sum", "-c", "SHA256SUMS")

	t.Run("serve-imap", func(t *testing.T) {
		pw := filepath.Join(home, "viewer-password")
		os.WriteFile(pw, []byte("auditor-secret\n"), 0o600)
		port := FreePort(t)
		tlsDir := filepath.Join(home, "view-tls")
		cmd := auditorCmd(t, home, "archive", "serve-imap", "--archive", arch, "--key", key, "--viewer-password-file", pw,
			"--tls-dir", tlsDir, "--listen", fmt.Sprintf("127.0.0.1:%d", port))
		logs := &testutil.LockedBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
		WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second)
		if !strings.Contains(logs.String(), filepath.Join(tlsDir, "ca.pem")) {
			t.Errorf("serve-imap does not name the CA to import:\n%s", logs.String())
		}
		pem, err := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		c, err := imapclient.DialTLS(fmt.Sprintf("127.0.0.1:%d", port), &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login("auditor", "auditor-secret").Wait(); err != nil {
			t.Fatalf("login with --viewer-password-file: %v\n%s", err, logs.String())
		}
		boxes, err := c.List("", "*", nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, b := range boxes {
			names = append(names, b.Mailbox)
		}
		sort.Strings(names)
		for _, want := range []string{"INBOX", "All", "Clients/A/anna@client.example", "Decisions", "Refused"} {
			if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
				t.Errorf("LIST lacks %s: %v", want, names)
			}
		}
		sel, err := c.Select("All", nil).Wait()
		if err != nil || sel.NumMessages != 3 {
			t.Fatalf("SELECT All: %+v %v", sel, err)
		}
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
		if err != nil || len(msgs) != 1 || !bytes.Contains(msgs[0].FindBodySection(&imap.FetchItemBodySection{}), []byte("Session notes.")) {
			t.Fatalf("FETCH: %v %v", msgs, err)
		}
	})

	if after := treeState(t, copyDir); fmt.Sprint(after) != fmt.Sprint(before) {
		for k, v := range after {
			if before[k] != v {
				t.Errorf("the auditor's copy changed: %s: %s, was %s", k, v, before[k])
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				t.Errorf("the auditor's copy changed: %s is gone", k)
			}
		}
	}
}

// TestAuditorCopyUsage: what an auditor who gets it wrong is told.
func TestAuditorCopyUsage(t *testing.T) {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, "notanarchive"), 0o755)
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"archive", "verify", "--archive", "notanarchive"}, 1, "not an archive folder (no seal.pub in it)"},
		{[]string{"archive", "verify", "--archive", "notanarchive", "-c", "only-data-dir.toml"}, 2, "not both"},
		// The auditor: a configuration with data_dir only, no --archive.
		{[]string{"archive", "verify"}, 1, "give --archive DIR"},
		{[]string{"archive", "serve-imap", "--archive", "notanarchive", "--key", "k"}, 1, "not an archive folder"},
	} {
		_, errOut, code := auditorRun(t, home, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("sealpost %s: exit %d, %q; want exit %d saying %q", strings.Join(tt.args, " "), code, errOut, tt.code, tt.want)
		}
	}
}
