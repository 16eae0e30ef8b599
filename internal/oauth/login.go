package oauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Prompt tells the admin what to do to sign in; the command prints it.
type Prompt struct {
	// DeviceCode: open url on any device and enter code (before expires,
	// when it is set).
	DeviceCode func(url, code string, expires time.Time)
	// BrowserURL: open url in a browser on this machine; port is the one
	// to forward from a computer with a browser.
	BrowserURL func(url string, port int)
}

// LoginOptions say how to sign in.
type LoginOptions struct {
	// Device or Browser; with neither, a device code where the provider
	// offers one, else the browser.
	Device, Browser bool
	Listen          string // Browser: where the browser is sent back to, on loopback
	Prompt          Prompt
}

// Login signs in at the provider as user (the mailbox's address), with the
// admin's help, and keeps the grant for account. It returns the grant's
// file.
func (p *Provider) Login(ctx context.Context, account, user string, o LoginOptions) (string, error) {
	useDevice := o.Device || (!o.Browser && p.conf.Endpoint.DeviceAuthURL != "")
	if useDevice && p.conf.Endpoint.DeviceAuthURL == "" {
		return "", errors.New("the provider offers no device sign-in (device_auth_url): use --browser")
	}
	if !useDevice && p.conf.Endpoint.AuthURL == "" {
		return "", errors.New("the provider offers no browser sign-in (auth_url): use --device")
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, p.http)
	var tok *oauth2.Token
	var err error
	if useDevice {
		tok, err = p.deviceLogin(hctx, user, o.Prompt)
	} else {
		tok, err = p.browserLogin(hctx, user, o.Listen, o.Prompt)
	}
	if err != nil {
		return "", err
	}
	if tok.RefreshToken == "" {
		return "", errors.New("the provider granted access but no refresh token, so sealpost could not go on after an hour: check that the scopes include offline_access (Microsoft), or remove sealpost's access in the account's security settings and sign in again (Google)")
	}
	withExpiry(tok)
	path := GrantPath(p.dataDir, account)
	unlock, err := lockGrant(path)
	if err != nil {
		return "", err
	}
	err = saveGrant(path, tok)
	unlock()
	if err != nil {
		return "", err
	}
	return path, nil
}

func (p *Provider) deviceLogin(ctx context.Context, user string, prompt Prompt) (*oauth2.Token, error) {
	da, err := p.conf.DeviceAuth(ctx)
	if err != nil {
		return nil, fmt.Errorf("ask the provider for a sign-in code: %w", err)
	}
	where := da.VerificationURI
	if da.VerificationURIComplete != "" {
		where = da.VerificationURIComplete
	}
	prompt.DeviceCode(where, da.UserCode, da.Expiry)
	tok, err := p.conf.DeviceAccessToken(ctx, da)
	if err != nil {
		return nil, fmt.Errorf("sign-in not completed: %w", err)
	}
	return tok, nil
}

func (p *Provider) browserLogin(ctx context.Context, user, listen string, prompt Prompt) (*oauth2.Token, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("listen for the browser's return: %w", err)
	}
	defer l.Close()
	addr := l.Addr().(*net.TCPAddr)
	if !addr.IP.IsLoopback() {
		// Providers send browsers back over plain HTTP only to this machine.
		return nil, fmt.Errorf("--listen %s: must be a loopback address (127.0.0.1:PORT); forward the port to sign in from elsewhere", listen)
	}
	port := addr.Port
	c2 := *p.conf
	c2.RedirectURL = "http://" + addr.String() + "/"
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", user)}
	switch p.name {
	case "microsoft":
		// Entra matches loopback redirects by host, ignoring the port:
		// the registration says http://localhost.
		c2.RedirectURL = fmt.Sprintf("http://localhost:%d/", port)
	case "google":
		// Without these Google hands out no refresh token on a second sign-in.
		opts = append(opts, oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent"))
	}
	state := make([]byte, 16)
	rand.Read(state)
	wantState := hex.EncodeToString(state)
	authURL := c2.AuthCodeURL(wantState, opts...)
	prompt.BrowserURL(authURL, port)

	calls, stop := awaitReturn(l, wantState)
	defer stop()
	select {
	case cb := <-calls:
		if cb.refused != "" {
			err := fmt.Errorf("the provider refused: %s", cb.refused)
			cb.outcome <- err
			return nil, err
		}
		tok, err := c2.Exchange(ctx, cb.code, oauth2.VerifierOption(verifier))
		if err != nil {
			err = fmt.Errorf("exchange the sign-in code for a grant: %w", err)
		}
		cb.outcome <- err
		return tok, err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(15 * time.Minute):
		return nil, errors.New("nobody signed in within 15 minutes: start again")
	}
}

// callback is the browser's return, handed from the HTTP handler to the
// login, which exchanges the code and tells the page how that went.
type callback struct {
	code, refused string
	outcome       chan error
}

// awaitReturn serves the address the provider sends the browser back to,
// and hands every return with the sign-in's state to calls.
func awaitReturn(l net.Listener, wantState string) (calls chan callback, stop func()) {
	calls = make(chan callback)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/" || q.Get("state") != wantState {
			// A stray request (an old tab, another program) is not the
			// sign-in: it must not end it.
			http.Error(w, "This is not the sign-in sealpost is waiting for.", http.StatusBadRequest)
			return
		}
		cb := callback{code: q.Get("code"), outcome: make(chan error, 1)}
		if e := q.Get("error"); e != "" || cb.code == "" {
			cb.refused = strings.TrimSpace(e + " " + q.Get("error_description"))
		}
		var err error
		select {
		case calls <- cb:
			err = <-cb.outcome
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err != nil {
			fmt.Fprintf(w, "<!doctype html><title>sealpost</title><p>Sign-in failed: %s</p>", html.EscapeString(err.Error()))
			return
		}
		fmt.Fprint(w, "<!doctype html><title>sealpost</title><p>sealpost may now send and read this account's mail. You can close this page.</p>")
	})}
	go srv.Serve(l)
	return calls, func() {
		// Shutdown, not Close: the page with the outcome is still being written.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		cancel()
	}
}
