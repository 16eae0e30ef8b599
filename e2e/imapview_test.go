package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// viewProbe is what an auditor's mail client does, in Python's imaplib: log
// in over TLS, list the mailboxes, open a client's mailbox read-only and
// read-write, fetch every message, search, and try every command that
// would change something. It prints one line per finding.
const viewProbe = `
import imaplib, ssl, sys
port, ca, user, pw, client, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx)
try:
    m.login(user, "wrong")
    print("LOGIN-WRONG OK")
except imaplib.IMAP4.error:
    print("LOGIN-WRONG NO")
m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx)
m.login(user, pw)
typ, boxes = m.list()
for b in boxes:
    print("LIST", b.decode())
typ, data = m.select('"Clients/%s"' % client, readonly=True)
print("EXAMINE", typ, data[0].decode())
typ, data = m.select('"Clients/%s"' % client)
print("SELECT", typ, data[0].decode())
typ, data = m.uid("SEARCH", None, "ALL")
uids = data[0].split()
print("UIDS", len(uids))
for u in uids:
    typ, d = m.uid("FETCH", u, "(BODY.PEEK[])")
    open("%s/%s.eml" % (out, u.decode()), "wb").write(d[0][1])
typ, data = m.search(None, "SUBJECT", "Tuesday")
print("SEARCH-SUBJECT", data[0].decode())
typ, data = m.search(None, "BODY", "no-such-words-anywhere")
print("SEARCH-NONE", repr(data[0].decode()))
def attempt(name, f):
    try:
        typ, data = f()
        print(name, typ, data[0].decode() if data and data[0] else "")
    except imaplib.IMAP4.error as e:
        print(name, "NO", str(e))
attempt("STORE", lambda: m.store("1", "+FLAGS", r"\Deleted"))
attempt("COPY", lambda: m.copy("1", "All"))
attempt("APPEND", lambda: m.append("All", None, None, b"From: x@y\r\n\r\nforged\r\n"))
attempt("EXPUNGE", lambda: m.expunge())
attempt("DELETE", lambda: m.delete('"Clients/%s"' % client))
attempt("CREATE", lambda: m.create("Mine"))
attempt("RENAME", lambda: m.rename("All", "Other"))
m.logout()
`

// TestArchiveIMAPView: an auditor reads the record with a real IMAP client
// (Python's imaplib): one mailbox per client and per month, the messages
// byte for byte as the export has them, and nothing can be changed.
func TestArchiveIMAPView(t *testing.T) {
	RequireTools(t, "swaks", "python3")
	hash, _ := bcrypt.GenerateFromPassword([]byte("audit-pw"), bcrypt.MinCost)
	r := StartRelay(t, RelayOptions{Sections: fmt.Sprintf("[[archive.viewer]]\nusername = \"auditor\"\npassword_hash = %q\n", hash)})
	client := "anna@client.example"
	if _, errOut, code := r.Run(t, "", "consent", "add", client, "--evidence", "signed form"); code != 0 {
		t.Fatal(errOut)
	}
	for _, m := range []struct{ to, subject string }{
		{client, "Tuesday"}, {"colleague@practice.example", "Team meeting"}, {client, "Homework"},
	} {
		if out, ok := Swaks(t, r.SwaksArgs("--to", m.to, "--header", "Subject: "+m.subject, "--body", "About "+m.subject+".")...); !ok {
			t.Fatal(out)
		}
	}
	key := filepath.Join(r.DataDir, "archive-private-key.asc")
	export := filepath.Join(t.TempDir(), "export")
	if _, errOut, code := r.Run(t, "", "archive", "export", "--key", key, "--out", export, "--client", client); code != 0 {
		t.Fatal(errOut)
	}

	port := FreePort(t)
	cmd := exec.Command(Sealpost(t), "archive", "serve-imap", "--key", key, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "-c", r.Config)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second)

	fetched := t.TempDir()
	probe := filepath.Join(t.TempDir(), "probe.py")
	os.WriteFile(probe, []byte(viewProbe), 0o600)
	out, err := exec.Command("python3", probe, fmt.Sprint(port), r.CA, "auditor", "audit-pw", client, fetched).CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib: %v\n%s\nserver:\n%s", err, out, logs.String())
	}
	got := map[string]string{}
	var lists []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		if k == "LIST" {
			lists = append(lists, v)
		} else {
			got[k] = v
		}
	}
	if got["LOGIN-WRONG"] != "NO" {
		t.Errorf("a wrong password logged in")
	}
	month := "Months/" + time.Now().UTC().Format("2006-01")
	for _, want := range []string{`"Clients/` + client + `"`, month, "All"} {
		found := false
		for _, l := range lists {
			found = found || strings.Contains(l, want)
		}
		if !found {
			t.Errorf("LIST lacks %s: %v", want, lists)
		}
	}
	if !strings.HasPrefix(got["EXAMINE"], "OK 2") || !strings.HasPrefix(got["SELECT"], "OK 2") {
		t.Errorf("EXAMINE %q, SELECT %q: want the client's two messages", got["EXAMINE"], got["SELECT"])
	}
	if got["UIDS"] != "2" || got["SEARCH-SUBJECT"] != "1" || got["SEARCH-NONE"] != "''" {
		t.Errorf("search: UIDS %q, SUBJECT Tuesday %q, nothing %q", got["UIDS"], got["SEARCH-SUBJECT"], got["SEARCH-NONE"])
	}
	for _, c := range []string{"STORE", "COPY", "APPEND", "EXPUNGE", "DELETE", "CREATE", "RENAME"} {
		if !strings.HasPrefix(got[c], "NO") || !strings.Contains(got[c], "read-only") {
			t.Errorf("%s was not refused as read-only: %q", c, got[c])
		}
	}

	// Byte for byte what the export holds for this client.
	want := map[string]bool{}
	exported, _ := filepath.Glob(filepath.Join(export, "messages", "*.eml"))
	for _, f := range exported {
		b, _ := os.ReadFile(f)
		want[string(b)] = true
	}
	fetchedFiles, _ := filepath.Glob(filepath.Join(fetched, "*.eml"))
	if len(fetchedFiles) != 2 || len(want) != 2 {
		t.Fatalf("fetched %d messages, the export has %d; want 2 each", len(fetchedFiles), len(want))
	}
	for _, f := range fetchedFiles {
		b, _ := os.ReadFile(f)
		if !want[string(b)] {
			t.Errorf("%s is not byte for byte a message of the export", filepath.Base(f))
		}
	}
	if strings.Contains(logs.String(), client) {
		t.Errorf("the view's log names a client in clear")
	}
}
