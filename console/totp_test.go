package console

import (
	"context"
	"errors"
	"image/png"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
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
// the store's. From then on the password alone opens nothing: the code page
// asks for the code, a wrong or reused code is refused, a right one logs
// in, and a password left waiting over 5 minutes must be typed again.
func TestTOTPLogin(t *testing.T) {
	tc := startConsole(t)
	secret := enrollTOTP(t, tc, tc.loggedIn(t, "anna"))
	if e, ok, _ := tc.codes.LoginCode(context.Background(), "anna"); !ok || e.Secret != secret {
		t.Fatal("the secret is not kept in the store")
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

// logInWithCode logs in user with password and code on a fresh browser and
// says where the console sent it after the code.
func logInWithCode(t *testing.T, tc *testConsole, user, code string) (*http.Response, *browser) {
	t.Helper()
	b := tc.browser(t)
	b.get("/login")
	if resp, _ := b.post("/login", url.Values{"username": {user}, "password": {testPassword}}); location(resp) != "/login/code" {
		t.Fatalf("after the password: %s to %s", resp.Status, location(resp))
	}
	b.get("/login/code")
	resp, _ := b.post("/login/code", url.Values{"code": {code}})
	return resp, b
}

// TestTOTPSharedBetweenNodes: two consoles on one store (two nodes on one
// PostgreSQL): codes set up on one are asked for and accepted on the
// other, and a code taken on one is refused on the other.
func TestTOTPSharedBetweenNodes(t *testing.T) {
	node1, node2 := startConsole(t), startConsole(t)
	node2.totp = node1.codes
	node2.now = node1.clock()
	secret := enrollTOTP(t, node1, node1.loggedIn(t, "anna"))
	node1.advance(time.Minute)
	node2.advance(time.Minute)
	code, _ := totp.GenerateCodeCustom(secret, node2.clock(), totpOpts)
	if resp, _ := logInWithCode(t, node2, "anna", code); location(resp) != "/today" {
		t.Fatalf("the code on the other node: %s to %s", resp.Status, location(resp))
	}
	if resp, _ := logInWithCode(t, node1, "anna", code); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the code taken on node 2, again on node 1: %s", resp.Status)
	}
}

// TestTOTPStoreUnavailable: when the store cannot be read, a right
// password does not log in (codes may be on for the login), and the page
// says to try again; a code is not taken either.
func TestTOTPStoreUnavailable(t *testing.T) {
	tc := startConsole(t)
	secret := enrollTOTP(t, tc, tc.loggedIn(t, "anna"))
	tc.advance(time.Minute)
	code, _ := totp.GenerateCodeCustom(secret, tc.clock(), totpOpts)
	b := tc.browser(t)
	tc.codes.fail(errors.New("database unreachable"))
	b.get("/login")
	resp, body := b.post("/login", url.Values{"username": {"anna"}, "password": {testPassword}})
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Logins cannot be checked right now") {
		t.Errorf("login with the store down: %s to %q", resp.Status, location(resp))
	}
	if resp, _ := b.get("/today"); resp.StatusCode == http.StatusOK {
		t.Error("Today opened with the store down")
	}
	tc.codes.fail(nil)
	if resp, _ := logInWithCode(t, tc, "anna", code); location(resp) != "/today" {
		t.Errorf("the code once the store is back: %s to %s", resp.Status, location(resp))
	}
}

// TestMoveTOTPFile: the secrets of the file the console kept them in move
// into the store (a login the store has one for keeps the store's), the
// file goes, and the moved secret logs in; a damaged file stays, and
// nothing is moved.
func TestMoveTOTPFile(t *testing.T) {
	tc := startConsole(t)
	ctx := context.Background()
	dir := t.TempDir()
	const annaSecret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	tc.codes.SetLoginCode(ctx, "office", LoginCode{Secret: "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU", Since: tc.clock()})
	path := filepath.Join(dir, "console-totp.json")
	os.WriteFile(path, []byte(`{"anna": {"secret": "`+annaSecret+`", "since": "2026-12-01T09:00:00Z", "last_step": 5},
		"office": {"secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "since": "2026-12-01T09:00:00Z", "last_step": 5}}`), 0o600)
	damaged := filepath.Join(dir, "damaged.json")
	os.WriteFile(damaged, []byte(`{"anna": `), 0o600)
	if n, err := MoveTOTPFile(ctx, damaged, tc.codes); err == nil || n != 0 {
		t.Errorf("a damaged file: %d, %v", n, err)
	}
	if _, err := os.Stat(damaged); err != nil {
		t.Errorf("the damaged file is gone: %v", err)
	}
	n, err := MoveTOTPFile(ctx, path, tc.codes)
	if err != nil || n != 1 {
		t.Fatalf("moved %d, %v", n, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the file is still there: %v", err)
	}
	if e, _, _ := tc.codes.LoginCode(ctx, "office"); e.Secret != "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU" {
		t.Errorf("the store's own secret was replaced by the file's")
	}
	if n, err := MoveTOTPFile(ctx, path, tc.codes); n != 0 || err != nil {
		t.Errorf("no file: %d, %v", n, err)
	}
	code, _ := totp.GenerateCodeCustom(annaSecret, tc.clock(), totpOpts)
	if resp, _ := logInWithCode(t, tc, "anna", code); location(resp) != "/today" {
		t.Errorf("the moved secret's code: %s to %s", resp.Status, location(resp))
	}
}
