package console

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/sealpost/sealpost/internal/testutil/browsertest"
)

// chromiumConsole is the test console in headless Chromium, which does not
// know the test server's certificate authority.
func chromiumConsole(t *testing.T) (*testConsole, context.Context) {
	tc := startConsole(t)
	ctx := browsertest.Start(t, chromedp.Flag("ignore-certificate-errors", true))
	return tc, ctx
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	browsertest.Do(t, ctx, what, steps...)
}

func open(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	browsertest.Open(t, ctx, url, "main h1")
}

// logInAs fills the login form and sends it, as a person would.
func logInAs(t *testing.T, ctx context.Context, base, user string) {
	t.Helper()
	open(t, ctx, base+"/login")
	do(t, ctx, "log in as "+user, chromedp.SetValue("#username", user), chromedp.SetValue("#password", testPassword),
		chromedp.Click("form.login button"), chromedp.WaitVisible(".logout"))
}

// TestPagesInChromium: every page each role opens, at 1280×800 and at a
// phone's 390×844: it fits the width (nothing to scroll sideways), axe-core
// finds no serious or critical WCAG 2.1 AA violation, and a screenshot is
// kept (SEALPOST_SHOTS) for a person to look at.
func TestPagesInChromium(t *testing.T) {
	tc, ctx := chromiumConsole(t)
	shots := browsertest.ShotDir(t)

	pages := map[string][]string{
		"":       {"/login"},
		"office": {"/today", "/refusals", "/refusals/R7K2QX", "/queue", "/queue/Q1ANNA/drop", "/absences", "/absences/1/cancel", "/clients", "/clients/c007@client.example", "/keys", "/keys/" + proposedFpr + "/accept", "/archive", "/activity", "/nowhere"},
		"anna":   {"/today", "/refusals", "/refusals/R7K2QX", "/queue", "/absences", "/absences/1/cancel"},
		"audit":  {"/today", "/archive", "/activity", "/queue", "/absences"},
	}
	for _, user := range []string{"", "office", "anna", "audit"} {
		if user != "" {
			logInAs(t, ctx, tc.url, user)
		}
		for _, path := range pages[user] {
			for _, size := range [][2]int64{{1280, 800}, {390, 844}} {
				where := fmt.Sprintf("%s %s at %dx%d", orNobody(user), path, size[0], size[1])
				do(t, ctx, "resize", chromedp.EmulateViewport(size[0], size[1]))
				open(t, ctx, tc.url+path)
				if w := browsertest.Eval[float64](t, ctx, `document.documentElement.scrollWidth`); w > float64(size[0]) {
					t.Errorf("%s: the page is %v px wide", where, w)
				}
				browsertest.Axe(t, ctx, where)
				name := fmt.Sprintf("console-%s%s-%dx%d", orNobody(user), strings.ReplaceAll(path, "/", "-"), size[0], size[1])
				browsertest.Screenshot(t, ctx, shots, name)
			}
		}
		if user != "" {
			do(t, ctx, "log out", chromedp.EmulateViewport(1280, 800), chromedp.Click(".logout button"), chromedp.WaitVisible("form.login"))
		}
	}
	if _, err := os.Stat(filepath.Join(shots, "console-office-today-390x844.png")); err != nil {
		t.Error(err)
	}
}

func orNobody(user string) string {
	if user == "" {
		return "nobody"
	}
	return user
}

// TestGuardsInChromium: in the browser, a form whose CSRF token was taken
// out is refused and nothing happens; an auditor opening the queue's URL is
// told their login cannot open it; a session idle for over 30 minutes
// lands on the login page, which says why.
func TestGuardsInChromium(t *testing.T) {
	tc, ctx := chromiumConsole(t)
	logInAs(t, ctx, tc.url, "office")
	open(t, ctx, tc.url+"/queue")
	browsertest.Eval[bool](t, ctx, `(() => { document.querySelectorAll("input[name=csrf]").forEach(e => e.remove()); return true; })()`)
	do(t, ctx, "retry without the token", chromedp.Click(`button[aria-label="Retry Q1ANNA"]`), chromedp.WaitVisible(".problem"))
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "security token is missing or old") || len(tc.queue.retried) != 0 {
		t.Errorf("without the token: retried %v, the page says:\n%s", tc.queue.retried, text)
	}
	do(t, ctx, "log out", chromedp.Click(".logout button"), chromedp.WaitVisible("form.login"))

	logInAs(t, ctx, tc.url, "audit")
	open(t, ctx, tc.url+"/queue")
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "Your login cannot open this page.") || strings.Contains(text, "Q1ANNA") {
		t.Errorf("the auditor at /queue sees:\n%s", text)
	}
	tc.advance(31 * time.Minute)
	open(t, ctx, tc.url+"/today")
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "Your session ended after a while without use. Log in again.") {
		t.Errorf("after 31 idle minutes the browser shows:\n%s", text)
	}
}

// TestTOTPInChromium: a therapist sets up login codes from the page (the
// QR code shows, the key is read off the page), logs out, and logs in again
// with password and code; both pages pass axe-core.
func TestTOTPInChromium(t *testing.T) {
	tc, ctx := chromiumConsole(t)
	shots := browsertest.ShotDir(t)
	do(t, ctx, "window", chromedp.EmulateViewport(1280, 800))
	logInAs(t, ctx, tc.url, "anna")
	do(t, ctx, "open the set-up", chromedp.Click("a.codes"), chromedp.WaitVisible("img.qr"))
	// WaitVisible sees the element before its image has arrived: wait for
	// the image itself (decode settles once it is loaded, or failed).
	if w := browsertest.Eval[float64](t, ctx, `(img => img.decode().then(() => img.naturalWidth, () => 0))(document.querySelector("img.qr"))`); w < 200 {
		t.Errorf("the QR code is %v px wide: not shown", w)
	}
	browsertest.Axe(t, ctx, "the set-up page")
	browsertest.Screenshot(t, ctx, shots, "console-anna-totp-setup-1280x800")
	secret := strings.ReplaceAll(browsertest.Eval[string](t, ctx, `document.querySelector(".fingerprint").textContent`), " ", "")
	code, _ := totp.GenerateCodeCustom(secret, tc.clock(), totpOpts)
	do(t, ctx, "confirm", chromedp.SetValue("#code", code), chromedp.Click(`form[action="/account/totp"] button`), chromedp.WaitVisible(".done"))
	do(t, ctx, "log out", chromedp.Click(".logout button"), chromedp.WaitVisible("form.login"))

	tc.advance(time.Minute)
	open(t, ctx, tc.url+"/login")
	do(t, ctx, "password", chromedp.SetValue("#username", "anna"), chromedp.SetValue("#password", testPassword),
		chromedp.Click("form.login button"), chromedp.WaitVisible("#code"))
	browsertest.Axe(t, ctx, "the code page")
	browsertest.Screenshot(t, ctx, shots, "console-anna-totp-code-1280x800")
	code, _ = totp.GenerateCodeCustom(secret, tc.clock(), totpOpts)
	do(t, ctx, "code", chromedp.SetValue("#code", code), chromedp.Click("form.login button"), chromedp.WaitVisible("dl.facts"))
	if text := browsertest.Text(t, ctx); !strings.Contains(text, "Your queued mail") {
		t.Errorf("after the code the browser shows:\n%s", text)
	}
}

// TestWithoutJavaScript: with JavaScript off in the browser, an admin logs
// in, opens every page of the menu and sends a form (Retry): the console
// has no script to miss.
func TestWithoutJavaScript(t *testing.T) {
	tc, ctx := chromiumConsole(t)
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	logInAs(t, ctx, tc.url, "office")
	for _, path := range []string{"/today", "/refusals", "/refusals/R7K2QX", "/queue", "/absences", "/clients", "/keys", "/archive", "/activity"} {
		open(t, ctx, tc.url+path)
	}
	open(t, ctx, tc.url+"/queue")
	do(t, ctx, "retry", chromedp.Click(`button[aria-label="Retry Q1ANNA"]`), chromedp.WaitVisible(".done"))
	if len(tc.queue.retried) != 1 {
		t.Errorf("retried %v", tc.queue.retried)
	}
}
