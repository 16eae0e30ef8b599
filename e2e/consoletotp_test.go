package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/internal/testutil/browsertest"
)

// consoleCode is the authenticator app's code at t.
func consoleCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// consoleLogInWithCode logs user in with the password, then the code, and
// returns the page's text after the code.
func consoleLogInWithCode(t *testing.T, ctx context.Context, url, user, code string) string {
	t.Helper()
	browsertest.Open(t, ctx, url+"/login", "form.login")
	browsertest.Do(t, ctx, "the password of "+user, chromedp.SetValue("#username", user), chromedp.SetValue("#password", Password),
		chromedp.Click("form.login button"), chromedp.WaitVisible("#code"))
	// The code page has a heading too: mark it, and wait for the next page's.
	browsertest.Eval[bool](t, ctx, `(() => { document.body.dataset.answered = "no"; return true; })()`)
	browsertest.Do(t, ctx, "the code", chromedp.SetValue("#code", code), chromedp.Click("form.login button"),
		chromedp.WaitVisible(`body:not([data-answered]) main h1`))
	return browsertest.Text(t, ctx)
}

// TestConsoleCodesOnTwoNodes: two relays on one PostgreSQL, each with its
// console. An admin sets login codes up on node A (the key typed into an
// app, confirmed with a code); node B asks the same login for a code after
// its password and takes the app's next one; node A then refuses that code,
// used on B. `console codes-off` on B lets the password alone in on A.
func TestConsoleCodesOnTwoNodes(t *testing.T) {
	testutil.RequireTools(t, "chromium")
	pg := testutil.StartPostgres(t)
	owner := pg.NewDatabase()
	pg.Psql(dbName(owner), "CREATE ROLE sealpost_relay LOGIN")
	relayURL := withRole(owner, "sealpost_relay")
	// One passphrase.key for both nodes, as deploy/README says.
	sharedKey := strings.Repeat("5e", 32) + "\n"
	withKey := func(r *Relay) {
		os.MkdirAll(r.DataDir, 0o700)
		if err := os.WriteFile(filepath.Join(r.DataDir, "passphrase.key"), []byte(sharedKey), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, urlA := startConsoleRelay(t, RelayOptions{Sections: storeSection(relayURL), Setup: func(r *Relay) {
		withKey(r)
		runOK(t, r, "", "store", "init", "--as", "postgres", "--grant", "sealpost_relay")
	}})
	b, urlB := startConsoleRelay(t, RelayOptions{Sections: storeSection(relayURL), Setup: withKey})

	ctx := consoleBrowser(t)
	consoleLogIn(t, ctx, urlA, consoleAdmin)
	browsertest.Open(t, ctx, urlA+"/account/totp", "span.fingerprint")
	secret := strings.ReplaceAll(browsertest.Eval[string](t, ctx, `document.querySelector("span.fingerprint").textContent`), " ", "")
	browsertest.Do(t, ctx, "confirm the set-up", chromedp.SetValue("#code", consoleCode(t, secret, time.Now())),
		chromedp.Click(`form[action="/account/totp"] button`), chromedp.WaitVisible(".done"))
	consoleLogOut(t, ctx)

	// The set-up took this time step's code: the app's next one is due.
	next := consoleCode(t, secret, time.Now().Add(30*time.Second))
	if text := consoleLogInWithCode(t, ctx, urlB, consoleAdmin, next); !strings.Contains(text, "Today") || strings.Contains(text, "not the one") {
		t.Fatalf("node B after the code:\n%s", text)
	}
	consoleLogOut(t, ctx)
	if text := consoleLogInWithCode(t, ctx, urlA, consoleAdmin, next); !strings.Contains(text, "not the one your app shows now (or was used already)") {
		t.Errorf("node A took the code node B had taken:\n%s", text)
	}

	if out := runOK(t, b, "", "console", "codes-off", consoleAdmin); !strings.Contains(out, "Login codes are off for "+consoleAdmin) {
		t.Fatalf("codes-off: %s", out)
	}
	consoleLogIn(t, ctx, urlA, consoleAdmin)
	browsertest.Open(t, ctx, urlA+"/activity", "main h1")
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "turned login codes on for their login") {
		t.Errorf("node A's activity log:\n%s", text)
	}
}
