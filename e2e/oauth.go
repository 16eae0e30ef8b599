package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// FakeOAuth is an OAuth 2.0 authorization server on loopback, standing in
// for Microsoft's or Google's (no such server is packaged): device and
// authorization-code (PKCE) sign-in, refresh with rotation, and a userinfo
// endpoint (/me, as Microsoft Graph's) that Dovecot's oauth2 passdb asks
// whether an access token is good. The one user signs in as User.
type FakeOAuth struct {
	URL      string // http://127.0.0.1:PORT
	ClientID string
	User     string
	// AccessLifetime is the expires_in of access tokens, in seconds.
	// x/oauth2 treats tokens with less than 10 s left as expired, so a
	// small value makes every connection refresh.
	AccessLifetime int
	// Mechanisms are the SASL mechanisms Dovecot offers with these tokens
	// (default "xoauth2 oauthbearer").
	Mechanisms string

	mu        sync.Mutex
	rejectAll bool              // /me refuses every token, as for a mailbox without the permission
	codes     map[string]string // authorization code -> PKCE challenge
	devices   map[string]int    // device code -> polls so far
	refresh   map[string]bool   // valid refresh tokens
	access    map[string]bool   // valid access tokens
	refreshes int
	requests  int // to the token endpoint, answered or refused
}

// StartFakeOAuth serves until the test ends.
func StartFakeOAuth(t testing.TB, user string) *FakeOAuth {
	t.Helper()
	f := &FakeOAuth{ClientID: "sealpost-test-client", User: user, AccessLifetime: 3600,
		codes: map[string]string{}, devices: map[string]int{}, refresh: map[string]bool{}, access: map[string]bool{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.URL = "http://" + l.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /devicecode", f.deviceCode)
	mux.HandleFunc("GET /authorize", f.authorize)
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("GET /me", f.me)
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return f
}

// ConfigTOML is the [oauth2] table that points sealpost here.
func (f *FakeOAuth) ConfigTOML() string {
	return "[oauth2]\nprovider = \"custom\"\nclient_id = \"" + f.ClientID + "\"\n" +
		"auth_url = \"" + f.URL + "/authorize\"\ntoken_url = \"" + f.URL + "/token\"\n" +
		"device_auth_url = \"" + f.URL + "/devicecode\"\nscopes = [\"mail\", \"offline_access\"]\n"
}

// IntrospectionURL is for Dovecot's oauth2 passdb (introspection_mode = auth).
func (f *FakeOAuth) IntrospectionURL() string { return f.URL + "/me" }

// Refreshes counts the refresh-token grants served.
func (f *FakeOAuth) Refreshes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes
}

// TokenRequests counts every request to the token endpoint.
func (f *FakeOAuth) TokenRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// ValidRefreshToken reports whether tok would be accepted now.
func (f *FakeOAuth) ValidRefreshToken(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refresh[tok]
}

// AccessToken mints a token for the test's own logins (Dovecot.Client).
func (f *FakeOAuth) AccessToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	at := token()
	f.access[at] = true
	return at
}

// NewGrant issues a refresh token, as a finished sign-in would.
func (f *FakeOAuth) NewGrant() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	rt := token()
	f.refresh[rt] = true
	return rt
}

// RejectTokens makes /me find every access token unauthorised (refresh
// still works): the mailbox lacks SMTP AUTH or the app's permission.
func (f *FakeOAuth) RejectTokens(reject bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejectAll = reject
}

// Revoke withdraws every grant, as an admin removing the app's access does.
func (f *FakeOAuth) Revoke() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refresh, f.access = map[string]bool{}, map[string]bool{}
}

func token() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func oauthError(w http.ResponseWriter, code, desc string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
}

func (f *FakeOAuth) deviceCode(w http.ResponseWriter, r *http.Request) {
	if r.FormValue("client_id") != f.ClientID {
		oauthError(w, "invalid_client", "unknown client")
		return
	}
	dc := token()
	f.mu.Lock()
	f.devices[dc] = 0
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"device_code": dc, "user_code": "SEAL-" + dc[:4],
		"verification_uri": f.URL + "/device", "expires_in": 600, "interval": 1})
}

// authorize is the user at the sign-in page, consenting at once.
func (f *FakeOAuth) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("client_id") != f.ClientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	code := token()
	f.mu.Lock()
	f.codes[code] = q.Get("code_challenge")
	f.mu.Unlock()
	back := redirect.Query()
	back.Set("code", code)
	back.Set("state", q.Get("state"))
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (f *FakeOAuth) token(w http.ResponseWriter, r *http.Request) {
	if r.FormValue("client_id") != f.ClientID {
		oauthError(w, "invalid_client", "unknown client")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	switch r.FormValue("grant_type") {
	case "urn:ietf:params:oauth:grant-type:device_code":
		polls, ok := f.devices[r.FormValue("device_code")]
		if !ok {
			oauthError(w, "expired_token", "unknown device code")
			return
		}
		f.devices[r.FormValue("device_code")] = polls + 1
		if polls == 0 { // the user is still typing the code
			oauthError(w, "authorization_pending", "waiting for the user")
			return
		}
		delete(f.devices, r.FormValue("device_code"))
	case "authorization_code":
		challenge, ok := f.codes[r.FormValue("code")]
		sum := sha256.Sum256([]byte(r.FormValue("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != challenge {
			oauthError(w, "invalid_grant", "code unknown or verifier wrong")
			return
		}
		delete(f.codes, r.FormValue("code"))
	case "refresh_token":
		if !f.refresh[r.FormValue("refresh_token")] {
			oauthError(w, "invalid_grant", "AADSTS70000: The provided grant has been revoked.")
			return
		}
		// Rotation: the old refresh token is spent.
		delete(f.refresh, r.FormValue("refresh_token"))
		f.refreshes++
	default:
		oauthError(w, "unsupported_grant_type", r.FormValue("grant_type"))
		return
	}
	at, rt := token(), token()
	f.access[at], f.refresh[rt] = true, true
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "access_token": at, "refresh_token": rt,
		"expires_in": f.AccessLifetime, "scope": "mail offline_access"})
}

func (f *FakeOAuth) me(w http.ResponseWriter, r *http.Request) {
	at, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	ok, reject := f.access[at], f.rejectAll
	f.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return
	}
	if reject { // a good token, but for another mailbox than the login's
		writeJSON(w, http.StatusOK, map[string]string{"mail": "someone-else@" + f.User})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"mail": f.User})
}
