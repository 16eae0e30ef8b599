package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/internal/testutil"
)

// viewProbe is what an auditor's mail client does, in Python's imaplib. It
// takes one JSON argument and prints one JSON object.
//
//	mode "read":   log in (once with a wrong password), list the mailboxes,
//	               EXAMINE and SELECT the client's mailbox, fetch every message
//	               into out/UID.eml, search, and try every command that would
//	               change something.
//	mode "wait":   poll STATUS of the client's mailbox until it holds want
//	               messages or the deadline passes (new records are picked up
//	               by a rescan while the view runs).
const viewProbe = `
import imaplib, json, ssl, sys, time
a = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=a["ca"])
def connect():
    return imaplib.IMAP4_SSL("127.0.0.1", a["port"], ssl_context=ctx)
box = '"%s"' % a["box"]
r = {}
if a["mode"] == "wait":
    m = connect()
    m.login(a["user"], a["password"])
    deadline = time.time() + a["seconds"]
    n = -1
    while time.time() < deadline:
        typ, data = m.status(box, "(MESSAGES)")
        n = int(data[0].decode().rsplit("MESSAGES", 1)[1].strip(" )"))
        if n >= a["want"]:
            break
        time.sleep(0.2)
    r["messages"] = n
    m.logout()
    print(json.dumps(r))
    sys.exit(0)

m = connect()
try:
    m.login(a["user"], "wrong")
    r["wrong_login"] = "OK"
except imaplib.IMAP4.error:
    r["wrong_login"] = "NO"
m = connect()
m.login(a["user"], a["password"])
typ, boxes = m.list()
r["list"] = [b.decode() for b in boxes]
# What Thunderbird does at its first connection and when it polls folders.
typ, data = m.select("INBOX", readonly=True)
r["inbox"] = [typ, data[0].decode()]
typ, data = m.status("All", "(MESSAGES RECENT UNSEEN)")
r["status_recent"] = [typ, data[0].decode()]
typ, data = m.select(box, readonly=True)
r["examine"] = [typ, data[0].decode()]
r["uidvalidity"] = m.response("UIDVALIDITY")[1][0].decode()
typ, data = m.select(box)
r["select"] = [typ, data[0].decode()]
typ, data = m.uid("SEARCH", None, "ALL")
r["uids"] = [u.decode() for u in data[0].split()]
r["subjects"] = []
for u in r["uids"]:
    typ, d = m.uid("FETCH", u, "(BODY.PEEK[])")
    open("%s/%s.eml" % (a["out"], u), "wb").write(d[0][1])
    typ, d = m.uid("FETCH", u, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    r["subjects"].append(d[0][1].decode().strip())
today = time.strftime("%d-%b-%Y", time.gmtime())
r["search"] = {}
for name, crit in [("subject", ["SUBJECT", "Tuesday"]), ("from", ["FROM", a["client"]]), ("to", ["TO", a["client"]]),
                   ("body", ["BODY", '"About Homework"']), ("text", ["TEXT", '"works for me"']), ("none", ["BODY", "no-such-words-anywhere"]),
                   ("since", ["SINCE", today]), ("before", ["BEFORE", today]), ("uid", ["UID", "%s:*" % r["uids"][-1]])]:
    typ, data = m.search(None, *crit)
    r["search"][name] = data[0].decode()
r["refused"] = {}
def attempt(name, f):
    try:
        typ, data = f()
        r["refused"][name] = "%s %s" % (typ, data[0].decode() if data and data[0] else "")
    except imaplib.IMAP4.error as e:
        r["refused"][name] = "NO " + str(e)
attempt("STORE", lambda: m.store("1", "+FLAGS", r"\Deleted"))
attempt("STORE-SEEN", lambda: m.store("1", "-FLAGS", r"\Seen"))
attempt("COPY", lambda: m.copy("1", "All"))
attempt("APPEND", lambda: m.append("All", None, None, b"From: x@y\r\n\r\nforged\r\n"))
attempt("EXPUNGE", lambda: m.expunge())
attempt("DELETE", lambda: m.delete(box))
attempt("CREATE", lambda: m.create("Mine"))
attempt("RENAME", lambda: m.rename("All", "Other"))
typ, data = m.close()
r["close"] = typ
typ, data = m.select(box)
typ, data = m.fetch("1", "(FLAGS)")
r["flags_after"] = data[0].decode()
typ, data = m.select(box, readonly=True)
r["count_after"] = data[0].decode()
m.logout()
print(json.dumps(r))
`

// probeResult is what viewProbe prints.
type probeResult struct {
	WrongLogin   string            `json:"wrong_login"`
	List         []string          `json:"list"`
	Examine      []string          `json:"examine"`
	Select       []string          `json:"select"`
	UIDValidity  string            `json:"uidvalidity"`
	UIDs         []string          `json:"uids"`
	Subjects     []string          `json:"subjects"`
	Search       map[string]string `json:"search"`
	FlagsAfter   string            `json:"flags_after"`
	CountAfter   string            `json:"count_after"`
	Close        string            `json:"close"`
	Refused      map[string]string `json:"refused"` // command -> the reply
	Inbox        []string          `json:"inbox"`
	StatusRecent []string          `json:"status_recent"`
	Messages     int               `json:"messages"`
}

// TestArchiveIMAPView: an auditor reads the record with real IMAP clients
// (Python's imaplib, and mbsync from isync): the client's mailbox holds both
// directions (mail sent through the relay and a reply the relay ingested
// from the provider's IMAP server, Dovecot) in the order they were recorded,
// the messages are byte for byte the ones the export has, search works,
// nothing can be changed, records made while the view runs show up, and the
// UIDs survive a restart of the view (mbsync would complain otherwise).
func TestArchiveIMAPView(t *testing.T) {
	testutil.RequireTools(t, "swaks", "python3", "dovecot")
	const client = "anna@client.example"
	// The client's mailbox is in the folder of the address's initial.
	const clientBox = "Clients/A/" + client
	d := StartDovecot(t, From, "imap-secret")
	hash, _ := bcrypt.GenerateFromPassword([]byte("audit-pw"), bcrypt.MinCost)
	r := StartRelay(t, RelayOptions{Sections: fmt.Sprintf(`
[[archive.viewer]]
username = "auditor"
password_hash = %q
`, hash) + d.AccountIMAPSection(t)})
	if _, errOut, code := r.Run(t, "", "consent", "add", client, "--evidence", "signed form"); code != 0 {
		t.Fatal(errOut)
	}
	send := func(to, subject string) {
		t.Helper()
		if out, ok := Swaks(t, r.SwaksArgs("--to", to, "--header", "Subject: "+subject, "--body", "About "+subject+".")...); !ok {
			t.Fatal(out)
		}
	}
	send(client, "Tuesday")
	send("colleague@practice.example", "Team meeting")
	// The client answers; the relay finds the answer in the therapist's
	// mailbox (IDLE: polling is set to an hour) and archives it.
	d.Append(t, "INBOX", "From: Anna <"+client+">\r\nTo: "+From+"\r\nSubject: Re: Tuesday\r\nMessage-ID: <re-tuesday@client.example>\r\nDate: "+
		time.Now().UTC().Format(time.RFC1123Z)+"\r\n\r\nTuesday works for me.\r\n")
	testutil.WaitWithin(t, 30*time.Second, "the client's answer archived", func() bool {
		return strings.Contains(r.Logs.String(), "archived a client's message")
	})
	send(client, "Homework")

	key := filepath.Join(r.DataDir, "archive-private-key.asc")
	export := filepath.Join(t.TempDir(), "export")
	if _, errOut, code := r.Run(t, "", "archive", "export", "--key", key, "--out", export, "--client", client); code != 0 {
		t.Fatal(errOut)
	}
	exported := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(export, "messages", "*.eml"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		exported[string(b)] = true
	}
	if len(exported) != 3 {
		t.Fatalf("the export has %d messages for the client, want 3", len(exported))
	}

	port := FreePort(t)
	logs := &testutil.LockedBuffer{}
	stop := serveView(t, r, key, port, logs)

	probe := filepath.Join(t.TempDir(), "probe.py")
	os.WriteFile(probe, []byte(viewProbe), 0o600)
	runProbe := func(args map[string]any) probeResult {
		t.Helper()
		args["port"], args["ca"], args["user"], args["password"], args["client"], args["box"] = port, r.CA, "auditor", "audit-pw", client, clientBox
		j, _ := json.Marshal(args)
		var stderr bytes.Buffer
		cmd := exec.Command("python3", probe, string(j))
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("imaplib: %v\n%s\nview:\n%s", err, stderr.String(), logs.String())
		}
		var res probeResult
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("probe output %q: %v", out, err)
		}
		return res
	}

	fetched := t.TempDir()
	got := runProbe(map[string]any{"mode": "read", "out": fetched})
	if got.WrongLogin != "NO" {
		t.Errorf("a wrong password logged in")
	}
	month := "Months/" + time.Now().UTC().Format("2006-01")
	for _, want := range []string{`"Clients/A"`, `"` + clientBox + `"`, month, "All"} {
		found := false
		for _, l := range got.List {
			found = found || strings.Contains(l, want)
		}
		if !found {
			t.Errorf("LIST lacks %s: %v", want, got.List)
		}
	}
	for _, l := range got.List {
		if strings.Contains(l, "colleague@") {
			t.Errorf("a colleague got a client mailbox: %s", l)
		}
	}
	if fmt.Sprint(got.Examine) != "[OK 3]" || fmt.Sprint(got.Select) != "[OK 3]" {
		t.Errorf("EXAMINE %v, SELECT %v: want the client's three messages", got.Examine, got.Select)
	}
	// Both directions, in the order they were recorded.
	if want := []string{"Subject: Tuesday", "Subject: Re: Tuesday", "Subject: Homework"}; fmt.Sprint(got.Subjects) != fmt.Sprint(want) {
		t.Errorf("the client's mailbox holds %q, want %q", got.Subjects, want)
	}
	for name, want := range map[string]string{
		"subject": "1 2", "from": "2", "to": "1 3", "body": "3", "text": "2", "none": "",
		"since": "1 2 3", "before": "", "uid": "3",
	} {
		if got.Search[name] != want {
			t.Errorf("SEARCH %s: %q, want %q", name, got.Search[name], want)
		}
	}
	for _, c := range []string{"STORE", "COPY", "APPEND", "EXPUNGE", "DELETE", "CREATE", "RENAME"} {
		if v := got.Refused[c]; !strings.HasPrefix(v, "NO") || !strings.Contains(v, "read-only") {
			t.Errorf("%s was not refused as read-only: %q", c, v)
		}
	}
	// \Seen is the viewer's own, kept while the view runs.
	if v := got.Refused["STORE-SEEN"]; !strings.HasPrefix(v, "OK") {
		t.Errorf("STORE -FLAGS (\\Seen) in a SELECTed mailbox: %q, want OK", v)
	}
	if fmt.Sprint(got.Inbox) != "[OK 1]" {
		t.Errorf("SELECT INBOX: %v, want OK with the one message explaining the folders", got.Inbox)
	}
	if len(got.StatusRecent) != 2 || got.StatusRecent[0] != "OK" || !strings.Contains(got.StatusRecent[1], "RECENT 0") {
		t.Errorf("STATUS All (MESSAGES RECENT UNSEEN): %v", got.StatusRecent)
	}
	if strings.Contains(got.FlagsAfter, `\Seen`) || strings.Contains(got.FlagsAfter, `\Deleted`) || got.CountAfter != "3" {
		t.Errorf("after the refused commands: flags %q, %s messages", got.FlagsAfter, got.CountAfter)
	}
	if got.Close != "OK" {
		t.Errorf("CLOSE on the read-only mailbox: %q, want OK", got.Close)
	}
	compareWithExport(t, "imaplib", fetched, exported, 3)

	// A record made while the view runs shows up on a rescan.
	send(client, "Thursday")
	if n := runProbe(map[string]any{"mode": "wait", "want": 4, "seconds": 15}).Messages; n != 4 {
		t.Errorf("the client's mailbox has %d messages after a new one was recorded, want 4", n)
	}

	t.Run("mbsync", func(t *testing.T) {
		testutil.RequireTools(t, "mbsync")
		maildir := t.TempDir()
		cfg := filepath.Join(t.TempDir(), "mbsyncrc")
		// mbsync matches the certificate against DNS names only, not the
		// 127.0.0.1 address in it.
		os.WriteFile(cfg, []byte(fmt.Sprintf(`IMAPAccount view
Host localhost
Port %d
User auditor
Pass audit-pw
SSLType IMAPS
CertificateFile %s
AuthMechs LOGIN

IMAPStore view-far
Account view

MaildirStore view-near
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel view
Far :view-far:
Near :view-near:
Patterns *
Create Near
Sync Pull
Expunge None
Remove None
SyncState *
`, port, r.CA, maildir, maildir)), 0o600)
		mbsync := func() {
			t.Helper()
			out, err := exec.Command("mbsync", "-c", cfg, "-a").CombinedOutput()
			if err != nil {
				t.Fatalf("mbsync: %v\n%s\nview:\n%s", err, out, logs.String())
			}
		}
		mbsync()
		clientDir := filepath.Join(maildir, "Clients", "A", client)
		got := maildirFiles(t, clientDir)
		// mbsync stores with the local line ending (LF) and adds its own
		// X-TUID header field at the end of the header; the bytes are
		// otherwise the archived ones.
		tuid := regexp.MustCompile(`(?m)^X-TUID: [A-Za-z0-9+/]+\n`)
		matched := 0
		for _, m := range got {
			crlf := strings.ReplaceAll(tuid.ReplaceAllString(m, ""), "\n", "\r\n")
			if exported[crlf] {
				matched++
			}
		}
		if len(got) != 4 || matched != 3 {
			t.Errorf("mbsync pulled %d messages into %s, %d of them the exported ones byte for byte (after undoing mbsync's LF and X-TUID); want 4 and 3", len(got), clientDir, matched)
		}
		if all := maildirFiles(t, filepath.Join(maildir, "All")); len(all) != 5 {
			t.Errorf("mbsync pulled %d messages from All, want 5", len(all))
		}

		// Restart the view: the UIDs and UIDVALIDITY are the same, so a
		// second run pulls nothing and duplicates nothing.
		stop()
		stop = serveView(t, r, key, port, logs)
		mbsync()
		if again := maildirFiles(t, clientDir); len(again) != 4 {
			t.Errorf("after restarting the view, mbsync holds %d messages for the client, want 4 (UIDs changed?)", len(again))
		}
	})

	if strings.Contains(logs.String(), client) || strings.Contains(logs.String(), "Tuesday") {
		t.Errorf("the view's log names a client or a subject in clear")
	}
}

// serveView starts sealpost archive serve-imap on port and returns a
// function that stops it.
func serveView(t *testing.T, r *Relay, key string, port int, logs *testutil.LockedBuffer) (stop func()) {
	t.Helper()
	cmd := exec.Command(Sealpost(t), "archive", "serve-imap", "--key", key, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "-c", r.Config)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("serve-imap did not stop on SIGTERM")
		}
	}
	t.Cleanup(stop)
	WaitListening(t, fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second)
	return stop
}

// compareWithExport checks that every fetched file is byte for byte one of
// the exported messages.
func compareWithExport(t *testing.T, who, dir string, exported map[string]bool, want int) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != want {
		t.Fatalf("%s fetched %d messages, want %d", who, len(files), want)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if !exported[string(b)] {
			t.Errorf("%s: %s is not byte for byte a message of the export", who, filepath.Base(f))
		}
	}
}

// maildirFiles returns the messages of a Maildir folder (cur and new).
func maildirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"cur", "new"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(b))
		}
	}
	sort.Strings(out)
	return out
}
