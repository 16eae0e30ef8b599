package console

import (
	"bytes"
	"image/png"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
)

var shownSecret = regexp.MustCompile(`<span class="mono fingerprint">([A-Z2-7 ]+)</span>`)

// enrollTOTP sets up codes for the browser's login and returns the secret.
func enrollTOTP(t *testing.T, tc *testConsole, b *browser) string {
	t.Helper()
	_, body := b.get("/account/totp")
	m := shownSecret.FindStringSubmatch(body)
	if m == nil || !strings.Contains(body, `src="/account/totp/qr.png"`) {
		t.Fatalf("the set-up page shows no key or QR code:\n%s", body)
	}
	secret := strings.ReplaceAll(m[1], " ", "")
	resp, err := b.c.Get(tc.url + "/account/totp/qr.png")
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(resp.Body)
	resp.Body.Close()
	if err != nil || img.Bounds().Dx() < 200 {
		t.Fatalf("QR code: %v", err)
	}
	if resp, _ := b.post("/account/totp", url.Values{"code": {"000000"}}); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("a wrong code confirmed the set-up: %s", resp.Status)
	}
	code, _ := totp.GenerateCodeCustom(secret, tc.clock(), totpOpts)
	if resp, _ := b.post("/account/totp", url.Values{"code": {code}}); location(resp) != "/account/totp?done=on" {
		t.Fatalf("set-up with the right code: %s to %s", resp.Status, location(resp))
	}
	return secret
}

// TestTOTPLogin: a therapist sets codes up by scanning the QR code (or
// typing the key) and confirming a code; the secret file is sealpost's
// alone. From then on the password alone opens nothing: the code page
// asks for the code, a wrong or reused code is refused, a right one logs
// in, and a password left waiting over 5 minutes must be typed again.
func TestTOTPLogin(t *testing.T) {
	tc := startConsole(t)
	secret := enrollTOTP(t, tc, tc.loggedIn(t, "anna"))
	if fi, err := os.Stat(tc.o.TOTPFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the secrets' file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(tc.o.TOTPFile); !bytes.Contains(b, []byte(secret)) {
		t.Fatal("the secret is not kept")
	}

	tc.advance(time.Minute)
	b := tc.browser(t)
	b.get("/login")
	resp, _ := b.post("/login", url.Values{"username": {"anna"}, "password": {testPassword}})
	if location(resp) != "/login/code" {
		t.Fatalf("after the password: %s to %s", resp.Status, location(resp))
	}
	if resp, _ := b.get("/today"); location(resp) != "/login/code" {
		t.Errorf("Today before the code: %s to %s", resp.Status, location(resp))
	}
	if _, body := b.get("/login/code"); !strings.Contains(body, "six digits") {
		t.Errorf("the code page:\n%s", body)
	}
	if resp, _ := b.post("/login/code", url.Values{"code": {"123456"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong code: %s", resp.Status)
	}
	code, _ := totp.GenerateCodeCustom(secret, tc.clock(), totpOpts)
	if resp, _ := b.post("/login/code", url.Values{"code": {code[:3] + " " + code[3:]}}); location(resp) != "/today" {
		t.Fatalf("the right code: %s to %s", resp.Status, location(resp))
	}
	if resp, _ := b.get("/today"); resp.StatusCode != http.StatusOK {
		t.Errorf("Today after the code: %s", resp.Status)
	}

	replay := tc.browser(t)
	replay.get("/login")
	replay.post("/login", url.Values{"username": {"anna"}, "password": {testPassword}})
	replay.get("/login/code")
	if resp, _ := replay.post("/login/code", url.Values{"code": {code}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the same code again: %s", resp.Status)
	}
	tc.advance(6 * time.Minute)
	code, _ = totp.GenerateCodeCustom(secret, tc.clock(), totpOpts)
	if resp, _ := replay.post("/login/code", url.Values{"code": {code}}); location(resp) != "/login?ended=1" {
		t.Errorf("a code 6 minutes after the password: %s to %s", resp.Status, location(resp))
	}

	// Turning codes off takes a current code.
	tc.advance(time.Minute)
	code, _ = totp.GenerateCodeCustom(secret, tc.clock(), totpOpts)
	if resp, _ := b.post("/account/totp/off", url.Values{"code": {"111111"}}); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("off with a wrong code: %s", resp.Status)
	}
	if resp, _ := b.post("/account/totp/off", url.Values{"code": {code}}); location(resp) != "/account/totp?done=off" {
		t.Errorf("off: %s to %s", resp.Status, location(resp))
	}
	tc.loggedIn(t, "anna") // the password alone again
}

// TestTOTPRequiredForAdmins: with codes required for admins, an admin
// without them can open only the set-up page until they are set up, and
// cannot turn them off; other roles are not asked.
func TestTOTPRequiredForAdmins(t *testing.T) {
	tc := startConsole(t)
	tc.SetRequireTOTPForAdmins(true)
	b := tc.browser(t)
	b.get("/login")
	if resp, _ := b.post("/login", url.Values{"username": {"office"}, "password": {testPassword}}); location(resp) != "/account/totp" {
		t.Fatalf("an admin without codes: %s to %s", resp.Status, location(resp))
	}
	for _, path := range []string{"/today", "/queue", "/keys"} {
		if resp, _ := b.get(path); location(resp) != "/account/totp" {
			t.Errorf("%s before the set-up: %s to %s", path, resp.Status, location(resp))
		}
	}
	if resp, _ := b.post("/queue/Q1ANNA/retry", nil); location(resp) != "/account/totp" || len(tc.queue.retried) != 0 {
		t.Errorf("an action before the set-up: %s, retried %v", location(resp), tc.queue.retried)
	}
	_, body := b.get("/account/totp")
	if !strings.Contains(body, "Set it up now to go on") {
		t.Errorf("the set-up page does not say why:\n%s", body)
	}
	enrollTOTP(t, tc, b)
	if resp, _ := b.get("/today"); resp.StatusCode != http.StatusOK {
		t.Errorf("Today after the set-up: %s", resp.Status)
	}
	if resp, _ := b.post("/account/totp/off", url.Values{"code": {"123456"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("turning required codes off: %s", resp.Status)
	}
	tc.loggedIn(t, "anna")
}
