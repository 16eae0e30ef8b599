package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// tbShownScript returns what Thunderbird's message window shows once it has
// finished showing the message (null before): the subject and sender as
// Thunderbird decoded them, the text in the message pane, the attachments it
// lists, and the name in the attachment bar when the bar is laid out on
// screen. msgLoaded is Thunderbird's own "done" (aboutMessage.js), set only
// after the attachment list is filled.
const tbShownScript = `
const win = Services.wm.getMostRecentWindow("mail:messageWindow");
const about = win?.document.getElementById("messageBrowser")?.contentWindow;
if (!about?.msgLoaded || !about.gMessage) {
  return null;
}
const pane = about.document.getElementById("messagepane");
const bar = about.document.getElementById("attachmentView");
const barShown = !bar.hidden && bar.getBoundingClientRect().height > 0;
return {
  title: win.document.title,
  subject: about.gMessage.mime2DecodedSubject,
  author: about.gMessage.mime2DecodedAuthor,
  text: pane.contentDocument.body.innerText,
  attachments: (about.currentAttachments || []).map(a => ({
    name: a.name, contentType: a.contentType, url: a.url, deleted: a.isDeleted,
  })),
  bar: barShown ? about.document.getElementById("attachmentName").value : "",
};`

// tbAttachmentScript reads an attachment's bytes through Thunderbird's own
// URL for it (the MIME part as Thunderbird decodes it) and returns their
// size and SHA-256.
const tbAttachmentScript = `
const {NetUtil} = ChromeUtils.importESModule("resource://gre/modules/NetUtil.sys.mjs");
return new Promise((resolve, reject) => NetUtil.asyncFetch(
  {uri: arguments[0], loadUsingSystemPrincipal: true}, (stream, status) => {
    if (!Components.isSuccessCode(status)) {
      reject(new Error("reading " + arguments[0] + ": status " + status));
      return;
    }
    const bytes = NetUtil.readInputStreamToString(stream, stream.available());
    const hash = Cc["@mozilla.org/security/hash;1"].createInstance(Ci.nsICryptoHash);
    hash.init(hash.SHA256);
    const data = Array.from(bytes, c => c.charCodeAt(0));
    hash.update(data, data.length);
    const sum = Array.from(hash.finish(false), c => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
    resolve({size: bytes.length, sha256: sum});
  }));`

type tbShown struct {
	Title, Subject, Author, Text, Bar string
	Attachments                       []struct {
		Name        string `json:"name"`
		ContentType string `json:"contentType"`
		URL         string `json:"url"`
		Deleted     bool   `json:"deleted"`
	}
}

// TestThunderbirdShowsSealedMessage is issue 18's "Thunderbird shows it with
// the attachment", asked of Thunderbird itself through Marionette: the copy the relay delivered to a
// client with a passphrase on file, opened in Thunderbird (a fresh profile
// under Xvfb, the .eml on its command line), is shown in a message window
// with the outer subject and the text on how to open it, nothing of the
// therapist's subject or text, and message.pdf in the attachment bar; the
// bytes Thunderbird reads for that attachment are the sealed PDF the relay
// sent.
func TestThunderbirdShowsSealedMessage(t *testing.T) {
	testutil.RequireTools(t, "swaks", "thunderbird", "Xvfb", "xdotool", "import")
	const (
		client     = "sealed@client.example"
		passphrase = "maple orbit velvet canyon"
		outer      = "Secure message from practice.example"
	)
	dir := t.TempDir()
	r := StartRelay(t, RelayOptions{})
	r.setPassphrase(t, client, "Chart 2", passphrase)
	body := filepath.Join(dir, "body.txt")
	if err := os.WriteFile(body, []byte("See you on Tuesday.\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, ok := Swaks(t, r.SwaksArgs("--to", client, "--header", "Subject: Tuesday's session", "--body", body)...); !ok {
		t.Fatalf("submission refused:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "the sealed copy in the outbox", func() bool { return len(r.Outbox(t)) == 1 })
	delivered := r.Outbox(t)[0]
	sum := sha256.Sum256(mimeAttachment(t, delivered, "message.pdf"))
	eml := filepath.Join(dir, "sealed.eml")
	if err := os.WriteFile(eml, []byte(delivered), 0o600); err != nil {
		t.Fatal(err)
	}

	tb := StartThunderbird(t, eml)
	var shown *tbShown
	var evalErr error
	t.Cleanup(func() {
		if shown == nil && evalErr != nil {
			t.Logf("the last look at the message window: %v", evalErr)
		}
	})
	testutil.WaitWithin(t, 30*time.Second, "Thunderbird to show the message", func() bool {
		evalErr = tb.Eval(&shown, tbShownScript)
		return evalErr == nil && shown != nil
	})
	tb.Screenshot(t, filepath.Join(dir, "thunderbird.png"))
	if shown.Subject != outer || !strings.HasPrefix(shown.Title, outer) || !strings.Contains(shown.Author, From) {
		t.Errorf("the message window shows %q from %q (window %q); want %q from %s", shown.Subject, shown.Author, shown.Title, outer, From)
	}
	if w := tb.VisibleWindows("^" + regexp.QuoteMeta(outer)); len(w) == 0 {
		t.Errorf("no window named %q is on the display", outer)
	}
	if !strings.Contains(shown.Text, "locked with the passphrase you agreed with us at intake") || strings.Contains(shown.Text+shown.Subject, "Tuesday") {
		t.Errorf("the message pane shows not the text on opening message.pdf alone:\n%s", shown.Text)
	}
	if len(shown.Attachments) != 1 || shown.Attachments[0].Name != "message.pdf" || shown.Attachments[0].ContentType != "application/pdf" || shown.Attachments[0].Deleted || shown.Bar != "message.pdf" {
		t.Fatalf("Thunderbird lists the attachments %+v, the attachment bar %q; want message.pdf (application/pdf) in both", shown.Attachments, shown.Bar)
	}
	var got struct {
		Size   int
		SHA256 string
	}
	if err := tb.Eval(&got, tbAttachmentScript, shown.Attachments[0].URL); err != nil {
		t.Fatalf("Thunderbird reads no message.pdf: %v", err)
	}
	if got.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("Thunderbird's message.pdf (%d bytes, SHA-256 %s) is not the PDF the relay sent (%x)", got.Size, got.SHA256, sum)
	}
}
