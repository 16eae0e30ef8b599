package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// TestOAuth2ToProvider: a provider that takes no passwords (Postfix whose
// Dovecot SASL accepts only XOAUTH2 tokens, checked at the authorization
// server). The admin signs in once with a device code; sealpost delivers with
// tokens it refreshes itself, keeps the refresh token the server rotates
// (through a restart), keeps mail queued with a clear reason when the grant
// is withdrawn, and picks up a new sign-in (in a browser) without a restart.
func TestOAuth2ToProvider(t *testing.T) {
	fake := StartFakeOAuth(t, "therapist@practice.example")
	fake.AccessLifetime = 5 // below x/oauth2's 10 s margin: every connection refreshes
	p := StartPostfix(t, PostfixOptions{SASL: true, OAuth2: fake})
	r := StartRelay(t, RelayOptions{Upstream: p, OAuth2: fake, Setup: func(r *Relay) {
		// serve refuses to start without a grant: say so first.
		if stdout, _, code := r.Run(t, "", "check", "--offline"); code == 0 || !strings.Contains(stdout, "run sealpost oauth2 login --account "+User) {
			t.Errorf("check without a grant (exit %d):\n%s", code, stdout)
		}
		stdout, stderr, code := r.Run(t, "", "oauth2", "login", "--account", User)
		if code != 0 || !regexp.MustCompile(`enter the code SEAL-\w+`).MatchString(stdout) || !strings.Contains(stdout, "Signed in") {
			t.Fatalf("oauth2 login --device (exit %d):\n%s%s", code, stdout, stderr)
		}
	}})
	grantFile := filepath.Join(r.DataDir, "oauth2", User+".json")
	if fi, err := os.Stat(grantFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("grant file: %v %v; want mode 0600", fi, err)
	}

	send := func(subject string) {
		t.Helper()
		if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--header", "Subject: "+subject)...); !ok {
			t.Fatalf("submission failed:\n%s", out)
		}
	}
	atSink := func(n int) func() bool { return func() bool { return len(p.Sink.Messages(t)) == n } }
	send("first")
	testutil.WaitWithin(t, 30*time.Second, "the first message at the sink", atSink(1))
	if log := p.Log(); !strings.Contains(log, "sasl_method=XOAUTH2, sasl_username=therapist@practice.example") {
		t.Errorf("Postfix did not see an XOAUTH2 login:\n%s", log)
	}
	if stdout, _, code := r.Run(t, "", "check"); code != 0 || !strings.Contains(stdout, "ok   login to "+p.Addr()) {
		t.Errorf("sealpost check with the grant (exit %d):\n%s", code, stdout)
	}

	// The server spends a refresh token when it answers it: the file must
	// hold the new one, or the next start could not log in.
	if fake.Refreshes() == 0 {
		t.Fatal("sealpost never refreshed its 5-second access token")
	}
	if rt := refreshTokenIn(t, grantFile); !fake.ValidRefreshToken(rt) {
		t.Fatal("the grant file holds a spent refresh token")
	}
	r.Stop(t)
	r.Start(t)
	send("after a restart")
	testutil.WaitWithin(t, 30*time.Second, "the message sent after a restart", atSink(2))

	// The provider refuses the token itself (XOAUTH2's error challenge):
	// the message waits, and the queue says what to look at.
	// (Restarts drop the connection sealpost keeps open to the provider,
	// logged in before.)
	fake.RejectTokens(true)
	r.Stop(t)
	r.Start(t)
	send("while the provider refuses the token")
	id := waitQueued(t, r, "the provider refused the OAuth 2.0 access token for therapist@practice.example")
	fake.RejectTokens(false)
	retryNow(t, r, id)
	testutil.WaitWithin(t, 30*time.Second, "the message delivered once the token is taken", atSink(3))

	// The practice's admin withdraws sealpost's access: mail waits, and the
	// queue says what to do.
	fake.Revoke()
	r.Stop(t)
	r.Start(t)
	send("while the grant is withdrawn")
	id = waitQueued(t, r, "oauth2 login --account "+User)

	// Signing in again (in a browser this time) is enough: no restart.
	browserLogin(t, r)
	retryNow(t, r, id)
	testutil.WaitWithin(t, 30*time.Second, "the waiting message delivered after signing in again", atSink(4))
}

// retryNow asks for the message's next attempt now. The queue's own
// retry may have delivered it in the meantime, which is as good: the
// caller waits for it at the sink.
func retryNow(t *testing.T, r *Relay, id string) {
	t.Helper()
	if _, stderr, code := r.Run(t, "", "queue", "retry", id); code != 0 && !strings.Contains(stderr, "no such message") {
		t.Fatalf("queue retry: %s", stderr)
	}
}

// waitQueued waits for one queued message whose last error says want, and
// returns its ID.
func waitQueued(t *testing.T, r *Relay, want string) string {
	t.Helper()
	var id, last string
	testutil.WaitWithin(t, 30*time.Second, "a queued message failing with "+want, func() bool {
		out, _, _ := r.Run(t, "", "queue", "list", "--json")
		var q []struct {
			ID        string `json:"id"`
			LastError string `json:"last_error"`
		}
		json.Unmarshal([]byte(out), &q)
		if len(q) == 1 {
			id, last = q[0].ID, q[0].LastError
		}
		return len(q) == 1 && strings.Contains(last, want)
	})
	t.Logf("queued: %s", last)
	return id
}

// TestOAuth2IMAPIngest: the account's mailbox is read with the same grant
// (XOAUTH2 to Dovecot, which takes no password), without an IMAP password file.
func TestOAuth2IMAPIngest(t *testing.T) {
	fake := StartFakeOAuth(t, From)
	d := StartDovecotWith(t, From, "", fake)
	d.Append(t, "INBOX", inboxMessage("Anna <anna@client.example>", "Appointment", "", "Could we move Tuesday?"))
	p := StartPostfix(t, PostfixOptions{SASL: true, OAuth2: fake})
	r := StartRelay(t, RelayOptions{Upstream: p, OAuth2: fake, Sections: `
[account.imap]
address = "` + d.IMAPSAddr() + `"
ca_file = "` + d.PKI.CAFile + `"
poll = "1h"
`, Setup: func(r *Relay) {
		consentAll(t, r, "anna@client.example")
		if stdout, stderr, code := r.Run(t, "", "oauth2", "login", "--account", User, "--device"); code != 0 {
			t.Fatalf("oauth2 login (exit %d):\n%s%s", code, stdout, stderr)
		}
	}})
	testutil.WaitWithin(t, 30*time.Second, "the client's message archived", func() bool {
		return strings.Contains(r.Logs.String(), "archived a client's message")
	})
	if log := d.Log(); !strings.Contains(log, "method=XOAUTH2") {
		t.Errorf("Dovecot did not see an XOAUTH2 login:\n%s", log)
	}
	imapLine := "IMAP login to " + d.IMAPSAddr() + " as " + From + ", folders INBOX (read only)"
	if stdout, _, code := r.Run(t, "", "check"); code != 0 || !strings.Contains(stdout, "ok   "+imapLine) {
		t.Errorf("sealpost check (exit %d):\n%s", code, stdout)
	}
	// The app lost its IMAP permission: check says so (Dovecot's refusal).
	fake.RejectTokens(true)
	stdout, _, code := r.Run(t, "", "check")
	if code != 1 || !strings.Contains(stdout, "FAIL "+imapLine) {
		t.Errorf("sealpost check with tokens refused (exit %d):\n%s", code, stdout)
	}
	if !strings.Contains(stdout, "the provider refused the OAuth 2.0 access token") {
		t.Errorf("check does not say the token was refused:\n%s", stdout)
	}
}

// TestOAuth2BearerOnly: a provider that offers OAUTHBEARER (RFC 7628) and
// not XOAUTH2 gets OAUTHBEARER, over SMTP and IMAP.
func TestOAuth2BearerOnly(t *testing.T) {
	fake := StartFakeOAuth(t, From)
	fake.Mechanisms = "oauthbearer"
	d := StartDovecotWith(t, From, "", fake)
	p := StartPostfix(t, PostfixOptions{SASL: true, OAuth2: fake})
	r := StartRelay(t, RelayOptions{Upstream: p, OAuth2: fake, Sections: `
[account.imap]
address = "` + d.IMAPSAddr() + `"
ca_file = "` + d.PKI.CAFile + `"
poll = "1h"
`, Setup: func(r *Relay) {
		if stdout, stderr, code := r.Run(t, "", "oauth2", "login", "--account", User); code != 0 {
			t.Fatalf("oauth2 login (exit %d):\n%s%s", code, stdout, stderr)
		}
	}})
	if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example")...); !ok {
		t.Fatalf("submission failed:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "the message at the sink", func() bool { return len(p.Sink.Messages(t)) == 1 })
	if log := p.Log(); !strings.Contains(log, "sasl_method=OAUTHBEARER") {
		t.Errorf("Postfix did not see an OAUTHBEARER login:\n%s", log)
	}
	if stdout, _, code := r.Run(t, "", "check"); code != 0 || !strings.Contains(stdout, "ok   IMAP login to "+d.IMAPSAddr()) {
		t.Errorf("sealpost check (exit %d):\n%s", code, stdout)
	}
	if log := d.Log(); !strings.Contains(log, "method=OAUTHBEARER") {
		t.Errorf("Dovecot did not see an OAUTHBEARER login:\n%s", log)
	}
}

// browserLogin runs `sealpost oauth2 login --browser` and plays the admin's
// browser: it opens the printed address, and the sign-in page sends it back
// to the command's loopback listener.
func browserLogin(t *testing.T, r *Relay) {
	t.Helper()
	cmd := exec.Command(r.bin, "oauth2", "login", "--account", User, "--browser", "-c", r.Config)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testutil.LockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var printed strings.Builder
	var authURL string
	for authURL == "" && sc.Scan() {
		printed.WriteString(sc.Text() + "\n")
		if u, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "http"); ok {
			authURL = "http" + u
		}
	}
	if authURL == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("oauth2 login --browser printed no address:\n%s%s", printed.String(), stderr.String())
	}
	// Something else knocking at the port first (an old tab, a scanner)
	// must not end the sign-in.
	u, _ := url.Parse(authURL)
	stray, err := http.Get(u.Query().Get("redirect_uri") + "?state=not-this-one&code=stolen")
	if err != nil {
		t.Fatal(err)
	}
	stray.Body.Close()
	if stray.StatusCode != http.StatusBadRequest {
		t.Errorf("a request with another state got %s", stray.Status)
	}
	resp, err := http.Get(authURL) // follows the redirect back to sealpost
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	rest, _ := io.ReadAll(stdout)
	printed.Write(rest)
	if err := cmd.Wait(); err != nil || !strings.Contains(printed.String(), "Signed in") {
		t.Fatalf("oauth2 login --browser: %v\n%s%s", err, printed.String(), stderr.String())
	}
	if !strings.Contains(string(page), "You can close this page") {
		t.Errorf("the browser was shown:\n%s", page)
	}
}

func refreshTokenIn(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(b, &tok); err != nil {
		t.Fatal(err)
	}
	return tok.RefreshToken
}
