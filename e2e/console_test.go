package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/internal/testutil/browsertest"
)

// The console's logins beside the e2e account (therapist): an admin and an
// auditor, with the e2e password.
const (
	consoleAdmin   = "office"
	consoleAuditor = "auditor"
)

// startConsoleRelay starts a relay with the console on a free port and
// returns it with the console's address.
func startConsoleRelay(t *testing.T, o RelayOptions) (*Relay, string) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	o.Sections += fmt.Sprintf(`
[console]
listen = %q
[[console.admin]]
username = %q
password_hash = %q
[[archive.viewer]]
username = %q
password_hash = %q
`, addr, consoleAdmin, hash, consoleAuditor, hash)
	r := StartRelay(t, o)
	WaitListening(t, addr, 10*time.Second)
	return r, "https://" + addr
}

// consoleBrowser is Chromium trusting nothing but what it is told: the
// relay's certificate comes from its own local CA, which the test's
// browser does not know.
func consoleBrowser(t *testing.T) context.Context {
	ctx := browsertest.Start(t, chromedp.Flag("ignore-certificate-errors", true))
	browsertest.Do(t, ctx, "window size", chromedp.EmulateViewport(1280, 800))
	return ctx
}

func consoleLogIn(t *testing.T, ctx context.Context, url, user string) {
	t.Helper()
	browsertest.Open(t, ctx, url+"/login", "form.login")
	browsertest.Do(t, ctx, "log in as "+user, chromedp.SetValue("#username", user), chromedp.SetValue("#password", Password),
		chromedp.Click("form.login button"), chromedp.WaitVisible(".logout"))
}

func consoleLogOut(t *testing.T, ctx context.Context) {
	t.Helper()
	browsertest.Do(t, ctx, "log out", chromedp.Click(".logout button"), chromedp.WaitVisible("form.login"))
}

// TestConsoleRefusalToConsent: a therapist's message to a client with
// nothing on file is refused; the admin logs in to the console, finds the
// refusal, and records the client's consent with a scan of the signed form;
// swaks sends again and the message goes out. The scan is in the archive,
// encrypted (its words nowhere in clear on the disk), the consent names
// it, and the archive still verifies. The therapist sees the refusal as
// their own, without the admin's forms; the auditor cannot open the
// refusals; a password changed in the configuration ends the session.
func TestConsoleRefusalToConsent(t *testing.T) {
	testutil.RequireTools(t, "swaks", "chromium")
	r, url := startConsoleRelay(t, RelayOptions{})
	out, ok := Swaks(t, r.SwaksArgs("--to", "dora@client.example", "--header", "Subject: Thursday", "--body", "See you on Thursday.")...)
	m := refIn.FindStringSubmatch(out)
	if ok || m == nil {
		t.Fatalf("want a refusal with a reference:\n%s", out)
	}
	ref := m[1]
	ctx := consoleBrowser(t)
	shots := browsertest.ShotDir(t)

	consoleLogIn(t, ctx, url, consoleAdmin)
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "1 recipient or message refused today") {
		t.Errorf("Today does not count the refusal:\n%s", text)
	}
	browsertest.Screenshot(t, ctx, shots, "e2e-console-admin-today")
	browsertest.Open(t, ctx, url+"/refusals", "main h1")
	browsertest.Do(t, ctx, "open the refusal", chromedp.Click(`a[href="/refusals/`+ref+`"]`), chromedp.WaitVisible("#consent"))
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "no passphrase, encryption key or written consent") {
		t.Errorf("the refusal's page:\n%s", text)
	}
	scan := filepath.Join(t.TempDir(), "consent-dora.pdf")
	os.WriteFile(scan, []byte("%PDF-1.4\n% Signed consent form of Dora Q, page 1\n%%EOF\n"), 0o644)
	browsertest.Do(t, ctx, "record the consent",
		chromedp.SetValue("#c-address", "dora@client.example"), chromedp.SetValue("#c-client", "Dora Q"),
		chromedp.SetValue("#c-evidence", "Consent form v3, in the paper chart"), chromedp.SetValue("#c-signed", "2026-12-01"),
		chromedp.SetUploadFiles("#c-scan", []string{scan}), chromedp.Click("#consent button"), chromedp.WaitVisible(".done"))
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "The consent is recorded") {
		t.Fatalf("after recording:\n%s", text)
	}
	browsertest.Axe(t, ctx, "the refusal after the consent")
	browsertest.Screenshot(t, ctx, shots, "e2e-console-admin-consent-recorded")

	if out, ok := Swaks(t, r.SwaksArgs("--to", "dora@client.example", "--header", "Subject: Thursday", "--body", "See you on Thursday.")...); !ok || !strings.Contains(out, "250 2.0.0 OK: queued as") {
		t.Fatalf("sent again after the consent:\n%s", out)
	}
	testutil.WaitFor(t, "the message in the outbox", func() bool { return len(r.Outbox(t)) == 1 })
	list, _, _ := r.Run(t, "", "consent", "list", "--json")
	if !strings.Contains(list, "dora@client.example") || !strings.Contains(list, "(scan scan-") || !strings.Contains(list, "office (console)") {
		t.Errorf("consent list:\n%s", list)
	}
	segs, _ := filepath.Glob(filepath.Join(r.DataDir, "archive", "seg-*.log"))
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		if strings.Contains(string(b), "Signed consent form of Dora") || strings.Contains(string(b), "consent-dora.pdf") {
			t.Errorf("%s holds the scan in clear", s)
		}
	}
	if out, errOut, code := r.Run(t, "", "archive", "verify"); code != 0 {
		t.Errorf("archive verify: exit %d\n%s%s", code, out, errOut)
	}
	// An export still reads an archive with evidence and activity records.
	exportDir := filepath.Join(t.TempDir(), "export")
	if out, errOut, code := r.Run(t, "", "archive", "export", "--verify", "--key", filepath.Join(r.DataDir, "archive-private-key.asc"), "--out", exportDir); code != 0 {
		t.Errorf("archive export: exit %d\n%s%s", code, out, errOut)
	}
	// The client's export holds the scan, byte for byte.
	clientDir := filepath.Join(t.TempDir(), "export-dora")
	if out, errOut, code := r.Run(t, "", "archive", "export", "--client", "dora@client.example", "--key", filepath.Join(r.DataDir, "archive-private-key.asc"), "--out", clientDir); code != 0 {
		t.Errorf("archive export --client: exit %d\n%s%s", code, out, errOut)
	}
	scanned, _ := os.ReadFile(scan)
	if found, _ := filepath.Glob(filepath.Join(clientDir, "evidence", "scan-*.pdf")); len(found) != 1 {
		t.Errorf("the client's export holds the scans %v", found)
	} else if b, _ := os.ReadFile(found[0]); len(scanned) == 0 || string(b) != string(scanned) {
		t.Errorf("%s is not the scan uploaded", found[0])
	}
	// Once the client withdraws consent, the next refusal names them: the
	// registry knows the address.
	if out, errOut, code := r.Run(t, "", "consent", "revoke", "dora@client.example", "--reason", "asked by phone"); code != 0 {
		t.Fatalf("consent revoke: %s%s", out, errOut)
	}
	out, _ = Swaks(t, r.SwaksArgs("--to", "dora@client.example")...)
	m = refIn.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("after the revocation:\n%s", out)
	}
	browsertest.Open(t, ctx, url+"/refusals/"+m[1], "main h1")
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "the recipient dora@client.example") || !strings.Contains(text, "withdrew their consent") {
		t.Errorf("the refusal after the revocation:\n%s", text)
	}
	browsertest.Open(t, ctx, url+"/clients?q=dora%40", "main h1")
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "dora@client.example") || !strings.Contains(text, "refused") || !strings.Contains(text, "revoked") {
		t.Errorf("the Clients page for dora@:\n%s", text)
	}
	browsertest.Screenshot(t, ctx, shots, "e2e-console-admin-clients")
	browsertest.Do(t, ctx, "dora's page", chromedp.Click(`a[href^="/clients/dora"]`), chromedp.WaitVisible("main h2"))
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "given") || !strings.Contains(text, "(scan scan-") || !strings.Contains(text, "office (console)") ||
		!strings.Contains(text, "asked by phone") {
		t.Errorf("dora's page:\n%s", text)
	}
	consoleLogOut(t, ctx)

	consoleLogIn(t, ctx, url, User)
	browsertest.Open(t, ctx, url+"/refusals/"+ref, "main h1")
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "send the message again") || strings.Contains(text, "Record what is missing") {
		t.Errorf("the therapist's view of the refusal:\n%s", text)
	}
	browsertest.Screenshot(t, ctx, shots, "e2e-console-therapist-refusal")
	// A password changed in the configuration, then a reload: the session
	// ends and the browser is sent to the login page.
	cfg, _ := os.ReadFile(r.Config)
	newHash, _ := bcrypt.GenerateFromPassword([]byte("a new password"), bcrypt.MinCost)
	therapistLine := fmt.Sprintf("username = %q\npassword_hash = ", User)
	i := strings.Index(string(cfg), therapistLine)
	if i < 0 {
		t.Fatalf("no therapist account in\n%s", cfg)
	}
	j := i + len(therapistLine) + strings.Index(string(cfg[i+len(therapistLine):]), "\n")
	os.WriteFile(r.Config, []byte(string(cfg[:i])+therapistLine+fmt.Sprintf("%q", newHash)+string(cfg[j:])), 0o600)
	syscall.Kill(r.Pid(), syscall.SIGHUP)
	testutil.WaitFor(t, "the reload", func() bool { return strings.Contains(r.Logs.String(), "configuration reloaded") })
	browsertest.Open(t, ctx, url+"/today", "main h1")
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "Log in") || strings.Contains(text, "Your refusals") {
		t.Errorf("after the password changed the browser shows:\n%s", text)
	}

	consoleLogIn(t, ctx, url, consoleAuditor)
	browsertest.Open(t, ctx, url+"/archive", "main h1")
	text := browsertest.Text(t, ctx)
	expect := regexp.MustCompile(`--expect (\d+:[0-9a-f]{64})`).FindStringSubmatch(text)
	if expect == nil || !strings.Contains(text, "No legal hold") {
		t.Fatalf("the auditor's archive page:\n%s", text)
	}
	// What the page says to write down is what verify takes later.
	if out, errOut, code := r.Run(t, "", "archive", "verify", "--expect", expect[1]); code != 0 {
		t.Errorf("archive verify --expect %s from the page: exit %d\n%s%s", expect[1], code, out, errOut)
	}
	browsertest.Do(t, ctx, "dora's timeline", chromedp.SetValue("#client", "dora@client.example"),
		chromedp.Click(`form[action="/archive/timeline"] button`), chromedp.WaitVisible("table.list"))
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "message, outbound") || !strings.Contains(text, "refusal, nothing_on_file") ||
		!strings.Contains(text, "evidence") || !strings.Contains(text, "event, delivered") {
		t.Errorf("dora's timeline:\n%s", text)
	}
	browsertest.Screenshot(t, ctx, shots, "e2e-console-auditor-timeline")
	browsertest.Open(t, ctx, url+"/activity", "main h1")
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "recorded a client's consent to unencrypted email") || !strings.Contains(text, consoleAdmin) ||
		strings.Contains(text, "dora@client.example") {
		t.Errorf("the auditor's activity page:\n%s", text)
	}
	browsertest.Open(t, ctx, url+"/refusals", "main h1")
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "Your login cannot open this page.") || strings.Contains(text, ref) {
		t.Errorf("the auditor at /refusals:\n%s", text)
	}
	if logs := r.Logs.String(); strings.Contains(logs, "dora@client.example") || strings.Contains(logs, "Dora Q") {
		t.Errorf("the log names the client")
	}
}

// TestConsoleQueue: with the provider down, the therapist's two messages
// wait in the queue; the Queue page lists them with what went wrong. Once
// the provider is back, Retry sends one at once (the schedule would wait an
// hour); Drop asks first, then removes the other, which never reaches the
// provider.
func TestConsoleQueue(t *testing.T) {
	testutil.RequireTools(t, "swaks", "chromium")
	sink := StartSink(t)
	r, url := startConsoleRelay(t, RelayOptions{Sink: sink, RetryMin: "1h", RetryMax: "2h", Lifetime: "5h"})
	sink.Stop()
	for _, subject := range []string{"Rota", "Wrong draft"} {
		if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--header", "Subject: "+subject)...); !ok {
			t.Fatalf("swaks:\n%s", out)
		}
	}
	testutil.WaitFor(t, "both delivery attempts to fail", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list", "--json")
		return strings.Count(out, `"attempts": 1`) == 2
	})
	ctx := consoleBrowser(t)
	consoleLogIn(t, ctx, url, User)
	browsertest.Open(t, ctx, url+"/queue", "main h1")
	rows := browsertest.Eval[[]string](t, ctx, `Array.from(document.querySelectorAll("tbody tr td.mono")).map(e => e.textContent)`)
	if len(rows) != 2 {
		t.Fatalf("the queue shows %v", rows)
	}
	if text := browsertest.Text(t, ctx); !strings.Contains(strings.ToLower(text), "connection refused") {
		t.Errorf("the queue does not say what went wrong:\n%s", text)
	}
	browsertest.Axe(t, ctx, "the queue")
	browsertest.Screenshot(t, ctx, browsertest.ShotDir(t), "e2e-console-therapist-queue")

	sink.Start(t)
	browsertest.Do(t, ctx, "retry the first", chromedp.Click(`button[aria-label="Retry `+rows[0]+`"]`), chromedp.WaitVisible(".done"))
	testutil.WaitFor(t, "the retried message at the provider", func() bool { return len(sink.Messages(t)) == 1 })
	browsertest.Do(t, ctx, "drop the second", chromedp.Click(`a[aria-label="Drop `+rows[1]+`…"]`), chromedp.WaitVisible(".warning-box"))
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "A dropped message is never sent") {
		t.Errorf("the confirmation:\n%s", text)
	}
	browsertest.Do(t, ctx, "confirm", chromedp.Click("button.danger"), chromedp.WaitVisible(".done"))
	testutil.WaitFor(t, "an empty queue", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list", "--json")
		return !strings.Contains(out, rows[1])
	})
	if n := len(sink.Messages(t)); n != 1 || !strings.Contains(sink.Messages(t)[0].Data, "Rota") {
		t.Errorf("the provider got %d messages; only the retried one may arrive", n)
	}
}

// TestConsoleKeys: the admin imports a client's public key from the Keys
// page (a file, as the client sent it); mail to the client then goes
// encrypted; removing it (after the confirmation) makes the next message
// to them refused again.
func TestConsoleKeys(t *testing.T) {
	testutil.RequireTools(t, "swaks", "chromium")
	r, url := startConsoleRelay(t, RelayOptions{})
	keyFile := filepath.Join(t.TempDir(), "erin.asc")
	os.WriteFile(keyFile, testutil.ArmoredPublicKey(t, testutil.OpenPGPKey(t, "Erin", "erin@client.example")), 0o644)
	ctx := consoleBrowser(t)
	consoleLogIn(t, ctx, url, consoleAdmin)
	browsertest.Open(t, ctx, url+"/keys", "main h1")
	browsertest.Do(t, ctx, "import the key", chromedp.SetUploadFiles("#k-file", []string{keyFile}),
		chromedp.Click(`form[action="/keys/import"] button`), chromedp.WaitVisible(".done"))
	text := browsertest.Text(t, ctx)
	if !strings.Contains(text, "erin@client.example") || !strings.Contains(text, "usable") {
		t.Fatalf("the keys page after the import:\n%s", text)
	}
	browsertest.Axe(t, ctx, "the keys page")
	browsertest.Screenshot(t, ctx, browsertest.ShotDir(t), "e2e-console-admin-keys")
	if out, ok := Swaks(t, r.SwaksArgs("--to", "erin@client.example")...); !ok || !strings.Contains(out, "to be encrypted with their OpenPGP key") {
		t.Fatalf("mail to erin after the import:\n%s", out)
	}
	browsertest.Do(t, ctx, "remove the key", chromedp.Click(`a.danger`), chromedp.WaitVisible(".warning-box"),
		chromedp.Click(`button.danger`), chromedp.WaitVisible(".done"))
	if out, ok := Swaks(t, r.SwaksArgs("--to", "erin@client.example")...); ok || !strings.Contains(out, "550 5.7.1") {
		t.Fatalf("mail to erin after the key was removed:\n%s", out)
	}
	// A key imported with the command is in the activity log too.
	if out, errOut, code := r.Run(t, "", "keys", "import", keyFile); code != 0 || errOut != "" {
		t.Fatalf("keys import: exit %d\n%s%s", code, out, errOut)
	}
	browsertest.Open(t, ctx, url+"/activity", "main h1")
	text = browsertest.Text(t, ctx)
	if strings.Count(text, "imported a key") != 2 || !strings.Contains(text, "removed a key") || !strings.Contains(text, "command on the server") {
		t.Errorf("the activity log after the console's and the command's changes:\n%s", text)
	}
}
