package e2e

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/internal/testutil"
)

// tbViewAccountScript does what an auditor does in Thunderbird's account
// setup for `archive serve-imap`: trusts the practice's CA (arguments[0],
// base64 DER), adds an IMAP account on 127.0.0.1 (port arguments[1]) with
// TLS and the viewer's login, and asks the server for its folders, as
// Thunderbird does when the account shows in the folder pane.
const tbViewAccountScript = `
const {MailServices} = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const certdb = Cc["@mozilla.org/security/x509certdb;1"].getService(Ci.nsIX509CertDB);
certdb.addCertFromBase64(arguments[0], "C,C,C");
const server = MailServices.accounts.createIncomingServer(arguments[2], "127.0.0.1", "imap");
server.port = arguments[1];
server.socketType = Ci.nsMsgSocketType.SSL;
server.authMethod = Ci.nsMsgAuthMethod.passwordCleartext;
server.password = arguments[3];
const account = MailServices.accounts.createAccount();
const identity = MailServices.accounts.createIdentity();
identity.email = arguments[2] + "@practice.example";
account.addIdentity(identity);
account.incomingServer = server;
const win = Services.wm.getMostRecentWindow("mail:3pane");
server.performExpand(win?.msgWindow ?? null);
return server.key;`

// tbViewFoldersScript returns what the auditor sees of the account in
// Thunderbird's main window: the folder pane's rows below the account (each
// with its path, the name it shows, the row it is nested in, and whether it
// opens), and once the
// folder arguments[1] is shown in the message list, the subjects listed
// there (null before). Thunderbird asks the server for the folder's
// messages when it shows it.
const tbViewFoldersScript = `
const {MailServices} = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");
const server = MailServices.accounts.getIncomingServer(arguments[0]);
const root = server.rootFolder;
const about3Pane = Services.wm.getMostRecentWindow("mail:3pane").gTabmail.currentAbout3Pane;
const rel = uri => uri.slice(root.URI.length + 1);
const rows = [...about3Pane.folderTree.querySelectorAll("li")].filter(r => r.uri?.startsWith(root.URI + "/"));
const folders = rows.map(r => {
  const f = MailServices.folderLookup.getFolderForURL(r.uri);
  const parent = r.parentElement.closest("li")?.uri ?? "";
  return {path: rel(r.uri), name: r.name, parent: parent.startsWith(root.URI + "/") ? rel(parent) : "",
          noselect: f.getFlag(Ci.nsMsgFolderFlags.ImapNoselect)};
});
const box = root.descendants.find(f => rel(f.URI) === arguments[1]);
if (!box) {
  return {folders, subjects: null};
}
if (about3Pane.gFolder?.URI !== box.URI) {
  about3Pane.displayFolder(box.URI);
  return {folders, subjects: null};
}
const view = about3Pane.gDBView;
const subjects = [];
for (let i = 0; i < (view?.rowCount ?? 0); i++) {
  subjects.push(view.getMsgHdrAt(i).mime2DecodedSubject);
}
return {folders, subjects: subjects.length ? subjects : null};`

type tbViewFolders struct {
	Folders []struct {
		Path, Name, Parent string
		NoSelect           bool `json:"noselect"`
	}
	Subjects []string
}

// TestThunderbirdShowsArchiveView: an auditor points Thunderbird (Debian's,
// under Xvfb, driven through Marionette) at `archive serve-imap` with a
// viewer login; its folder pane shows the tree Clients → A →
// anna@client.example (Clients and A as folders that do not open: IMAP's
// \Noselect), and the client's folder, opened, lists the message the
// therapist sent her.
func TestThunderbirdShowsArchiveView(t *testing.T) {
	testutil.RequireTools(t, "swaks", "thunderbird", "Xvfb", "xdotool")
	const (
		client  = "anna@client.example"
		subject = "Tuesday's session"
	)
	hash, _ := bcrypt.GenerateFromPassword([]byte("audit-pw"), bcrypt.MinCost)
	r := StartRelay(t, RelayOptions{Sections: fmt.Sprintf("[[archive.viewer]]\nusername = \"auditor\"\npassword_hash = %q\n", hash)})
	if _, errOut, code := r.Run(t, "", "consent", "add", client, "--evidence", "signed form"); code != 0 {
		t.Fatal(errOut)
	}
	if out, ok := Swaks(t, r.SwaksArgs("--to", client, "--header", "Subject: "+subject, "--body", "See you on Tuesday.")...); !ok {
		t.Fatalf("submission refused:\n%s", out)
	}
	port := FreePort(t)
	logs := &testutil.LockedBuffer{}
	serveView(t, r, filepath.Join(r.DataDir, "archive-private-key.asc"), port, logs)

	caPEM, err := os.ReadFile(r.CA)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatalf("%s holds no certificate", r.CA)
	}
	tb := StartThunderbird(t)
	var key string
	if err := tb.Eval(&key, tbViewAccountScript, block.Bytes, port, "auditor", "audit-pw"); err != nil {
		t.Fatalf("adding the account in Thunderbird: %v", err)
	}
	box := "Clients/A/" + client
	var seen tbViewFolders
	var evalErr error
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Thunderbird's folder pane: %+v; the message list of %s: %q (%v)\nview:\n%s", seen.Folders, box, seen.Subjects, evalErr, logs.String())
		}
	})
	testutil.WaitWithin(t, 60*time.Second, "Thunderbird to list the client's folder and its message", func() bool {
		evalErr = tb.Eval(&seen, tbViewFoldersScript, key, box)
		return evalErr == nil && seen.Subjects != nil
	})
	type row struct {
		name, parent string
		opens        bool
	}
	shown := map[string]row{}
	for _, f := range seen.Folders {
		shown[f.Path] = row{f.Name, f.Parent, !f.NoSelect}
	}
	for path, want := range map[string]row{
		"All":       {"All", "", true},
		"Clients":   {"Clients", "", false},
		"Clients/A": {"A", "Clients", false},
		box:         {client, "Clients/A", true},
	} {
		if got, ok := shown[path]; !ok || got != want {
			t.Errorf("the folder pane's row for %s: %+v (listed: %v), want %+v", path, got, ok, want)
		}
	}
	if len(seen.Subjects) != 1 || seen.Subjects[0] != subject {
		t.Errorf("the message list of %s shows %q, want the one message %q", box, seen.Subjects, subject)
	}
}
