package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/endpoints"

	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/internal/textutil"
)

// Providers that no longer take passwords over SMTP and IMAP (Microsoft 365)
// or take them only as app passwords (Google) are logged in to with OAuth 2.0:
// `sealpost oauth2 login` asks the admin to sign in once (a device code, or a
// browser) and keeps the grant (a refresh token) below data_dir; every
// connection to the provider then logs in by XOAUTH2 (or OAUTHBEARER) with
// an access token renewed from it.

func init() {
	register(&command{name: "oauth2 login", args: "--account NAME [--device | --browser [--listen ADDR]]",
		summary: "sign in at the provider once (OAuth 2.0) so that sealpost may send and read the account's mail", run: runOAuth2Login})
}

// OAuth2Config is [oauth2]: the practice's app registration at its provider.
type OAuth2Config struct {
	Provider         string   `toml:"provider"`           // microsoft, google or custom
	ClientID         string   `toml:"client_id"`          // the app registration's (client) ID
	ClientSecretFile string   `toml:"client_secret_file"` // Google's desktop clients have one; public clients none
	Tenant           string   `toml:"tenant"`             // microsoft: the directory (tenant) ID or domain
	AuthURL          string   `toml:"auth_url"`           // custom, or to override a provider's
	TokenURL         string   `toml:"token_url"`
	DeviceAuthURL    string   `toml:"device_auth_url"`
	Scopes           []string `toml:"scopes"`
}

// The permissions sealpost asks for: sending and reading mail, and a refresh
// token (offline_access) so that it can go on doing so without the admin.
var (
	microsoftScopes = []string{"https://outlook.office.com/SMTP.Send", "https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"}
	googleScopes    = []string{"https://mail.google.com/"}
)

// usesOAuth2 says whether any account logs in to the provider with OAuth 2.0.
func (c *Config) usesOAuth2() bool {
	for _, a := range c.Accounts {
		if a.UpstreamAuth == "oauth2" {
			return true
		}
	}
	return false
}

// validateOAuth2 checks [oauth2] when an account needs it.
func (c *Config) validateOAuth2(bad func(key, format string, args ...any)) {
	o := &c.OAuth2
	switch o.Provider {
	case "microsoft", "google", "custom":
	case "":
		bad("oauth2.provider", "an account has upstream_auth = \"oauth2\": set provider to microsoft, google or custom")
		return
	default:
		bad("oauth2.provider", "must be microsoft, google or custom, not %q", o.Provider)
		return
	}
	if o.ClientID == "" {
		bad("oauth2.client_id", "must be set: the application (client) ID of the practice's app registration at the provider")
	}
	switch {
	case o.Provider == "microsoft" && o.Tenant == "":
		// An app registered for one organisation is refused at the
		// common endpoints.
		bad("oauth2.tenant", "must be set for microsoft: the directory (tenant) ID, or the practice's Microsoft 365 domain")
	case o.Provider != "microsoft" && o.Tenant != "":
		bad("oauth2.tenant", "is for provider = \"microsoft\" only")
	}
	if o.Provider == "google" && o.ClientSecretFile == "" {
		bad("oauth2.client_secret_file", "must name a file holding the Google desktop client's secret")
	}
	if o.Provider == "custom" {
		if o.TokenURL == "" || (o.AuthURL == "" && o.DeviceAuthURL == "") {
			bad("oauth2.token_url", "provider = \"custom\" needs token_url and auth_url or device_auth_url")
		}
		if len(o.Scopes) == 0 {
			bad("oauth2.scopes", "provider = \"custom\" needs the scopes that allow SMTP and IMAP")
		}
	}
	for _, u := range []struct{ key, v string }{{"oauth2.auth_url", o.AuthURL}, {"oauth2.token_url", o.TokenURL}, {"oauth2.device_auth_url", o.DeviceAuthURL}} {
		if u.v != "" {
			if err := checkOAuth2URL(u.v); err != nil {
				bad(u.key, "%v", err)
			}
		}
	}
}

// checkOAuth2URL insists on HTTPS: tokens are credentials. Plain HTTP is
// allowed to this machine only, where nothing crosses a network.
func checkOAuth2URL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("%q: must be https:// (tokens never travel in clear)", s)
}

// oauth2Settings is the x/oauth2 configuration for [oauth2].
func oauth2Settings(cfg *Config) (*oauth2.Config, error) {
	o := cfg.OAuth2
	conf := &oauth2.Config{ClientID: o.ClientID, Scopes: o.Scopes}
	switch o.Provider {
	case "microsoft":
		conf.Endpoint = endpoints.AzureAD(o.Tenant)
		conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams // a public client: no secret to send
		if len(conf.Scopes) == 0 {
			conf.Scopes = microsoftScopes
		}
	case "google":
		conf.Endpoint = endpoints.Google
		conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
		// Google's device flow does not grant mail scopes: the browser it is.
		conf.Endpoint.DeviceAuthURL = ""
		if len(conf.Scopes) == 0 {
			conf.Scopes = googleScopes
		}
	}
	if o.AuthURL != "" {
		conf.Endpoint.AuthURL = o.AuthURL
	}
	if o.TokenURL != "" {
		conf.Endpoint.TokenURL = o.TokenURL
	}
	if o.DeviceAuthURL != "" {
		conf.Endpoint.DeviceAuthURL = o.DeviceAuthURL
	}
	if o.ClientSecretFile != "" {
		secret, err := readSecret(o.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("oauth2.client_secret_file: %w", err)
		}
		conf.ClientSecret = secret
	}
	return conf, nil
}

// grantPath is where an account's OAuth 2.0 grant is kept.
func grantPath(cfg *Config, account string) string {
	return filepath.Join(cfg.DataDir, "oauth2", account+".json")
}

// grant is one account's OAuth 2.0 grant: the refresh token in its file, and
// the access token made from it while that lasts. Relay and IMAP reader
// share one per file, so that a refresh token the provider rotates is
// replaced once.
type grant struct {
	path    string
	account string

	mu            sync.Mutex
	conf          *oauth2.Config
	log           *slog.Logger
	tok           *oauth2.Token
	modTime       time.Time // of the file when tok was read or written
	failed        error     // the last refresh's, while it is fresh
	failedAt      time.Time
	refusedAccess string // an access token the provider turned down
}

// refreshBackoff is how long a failed refresh is reported again instead of
// tried again: with the token endpoint down, every worker would otherwise
// wait out its own timeout, one after the other.
const refreshBackoff = time.Minute

var (
	grantsMu sync.Mutex
	grants   = map[string]*grant{}
)

// grantFor returns the account's grant, after checking that its file holds
// one (an admin who has not signed in yet learns it at start, not at the
// first message).
func grantFor(cfg *Config, account string, log *slog.Logger) (*grant, error) {
	conf, err := oauth2Settings(cfg)
	if err != nil {
		return nil, err
	}
	path := grantPath(cfg, account)
	grantsMu.Lock()
	g, ok := grants[path]
	if !ok {
		g = &grant{path: path, account: account}
		grants[path] = g
	}
	grantsMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conf, g.log = conf, log
	if err := g.loadLocked(false); err != nil {
		return nil, err
	}
	return g, nil
}

// loadLocked reads the file again when it changed (or when force is set):
// `sealpost oauth2 login` while sealpost runs takes effect at the next
// connection, and another process's refresh is not repeated.
func (g *grant) loadLocked(force bool) error {
	fi, err := os.Stat(g.path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no OAuth 2.0 grant in %s yet: run sealpost oauth2 login --account %s", g.path, g.account)
	}
	if err != nil {
		return err
	}
	if !force && g.tok != nil && fi.ModTime().Equal(g.modTime) {
		return nil
	}
	b, err := os.ReadFile(g.path)
	if err != nil {
		return err
	}
	var tok oauth2.Token
	if err := json.Unmarshal(b, &tok); err != nil || tok.RefreshToken == "" {
		return fmt.Errorf("%s holds no OAuth 2.0 grant (%v): run sealpost oauth2 login --account %s", g.path, err, g.account)
	}
	if g.tok == nil || tok.RefreshToken != g.tok.RefreshToken {
		g.failed = nil // a new sign-in: try it at once
	}
	if tok.AccessToken == g.refusedAccess {
		tok.Expiry = time.Now().Add(-time.Minute)
	}
	g.tok, g.modTime = &tok, fi.ModTime()
	return nil
}

// oauth2HTTP bounds every request to the provider's token endpoint.
var oauth2HTTP = &http.Client{Timeout: 30 * time.Second}

// accessToken returns a valid access token, refreshing it (and keeping a
// rotated refresh token) when it has expired.
func (g *grant) accessToken(ctx context.Context) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.loadLocked(false); err != nil {
		return "", err
	}
	if g.tok.Valid() {
		return g.tok.AccessToken, nil
	}
	if g.failed != nil && time.Since(g.failedAt) < refreshBackoff {
		return "", g.failed
	}
	// One refresh at a time across processes (serve, sudo sealpost check,
	// oauth2 login): a provider that sees a spent refresh token used again
	// may revoke the whole grant.
	unlock, err := lockGrant(g.path)
	if err != nil {
		return "", err
	}
	defer unlock()
	if err := g.loadLocked(true); err != nil {
		return "", err
	}
	if g.tok.Valid() { // refreshed by another process meanwhile
		return g.tok.AccessToken, nil
	}
	tok, err := g.conf.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, oauth2HTTP), g.tok).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			err = fmt.Errorf("the provider no longer accepts the OAuth 2.0 grant in %s (%s): run sealpost oauth2 login --account %s", g.path, textutil.OneLine(re.ErrorDescription), g.account)
		} else {
			err = fmt.Errorf("OAuth 2.0 token from %s: %w", g.conf.Endpoint.TokenURL, err)
		}
		g.failed, g.failedAt = err, time.Now()
		return "", err
	}
	g.failed = nil
	withExpiry(tok)
	g.tok = tok
	// The access token is kept too: a restart within its hour reuses it.
	if err := saveGrant(g.path, tok); err != nil {
		// The token works now; only a restart before the next refresh
		// would need the rotated refresh token that could not be kept.
		g.log.Error("cannot keep the refreshed OAuth 2.0 grant; after a restart the account may need sealpost oauth2 login again",
			"account", g.account, "file", g.path, "err", err)
		return tok.AccessToken, nil
	}
	if fi, err := os.Stat(g.path); err == nil {
		g.modTime = fi.ModTime()
	}
	return tok.AccessToken, nil
}

// refused marks an access token the provider turned down (revoked, or the
// mailbox lost the permission) as expired, so that the next login refreshes
// it instead of offering it again until its hour is up.
func (g *grant) refused(accessToken string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refusedAccess = accessToken
	if g.tok != nil && g.tok.AccessToken == accessToken {
		t := *g.tok
		t.Expiry = time.Now().Add(-time.Minute)
		g.tok = &t
	}
}

// withExpiry gives a token without expires_in a lifetime: x/oauth2 would
// take it as valid for ever and never refresh it.
func withExpiry(tok *oauth2.Token) {
	if tok.Expiry.IsZero() {
		tok.Expiry = time.Now().Add(time.Hour)
	}
}

// lockGrant takes the account's grant lock (flock on a file beside the
// grant), creating the folder as saveGrant does.
func lockGrant(path string) (unlock func(), err error) {
	if err := grantDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the OAuth 2.0 grant: %w", err)
	}
	keepOwner(f.Name(), filepath.Dir(path))
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock the OAuth 2.0 grant: %w", err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// grantDir makes data_dir/oauth2, the service user's like data_dir.
func grantDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err == nil {
		keepOwner(dir, filepath.Dir(dir))
	} else if !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

// saveGrant writes the token file whole or not at all: a crash mid-write must
// not lose the only refresh token.
func saveGrant(path string, tok *oauth2.Token) error {
	b, err := json.MarshalIndent(tok, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := grantDir(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".grant-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	// `sudo sealpost check` refreshes too: the file must stay the
	// service user's, or the service could not read it afterwards.
	keepOwner(f.Name(), dir)
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write OAuth 2.0 grant: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write OAuth 2.0 grant: %w", err)
	}
	return fsutil.SyncDir(dir)
}

// sasl returns a login for the provider as user, for relay and IMAP reader.
func (g *grant) sasl(user string) func(ctx context.Context) (sasl.Client, error) {
	return func(ctx context.Context) (sasl.Client, error) {
		tok, err := g.accessToken(ctx)
		if err != nil {
			return nil, err
		}
		return &tokenClient{user: user, token: tok, refused: func() { g.refused(tok) }}, nil
	}
}

// tokenClient logs in with an access token: SASL XOAUTH2 as Microsoft and
// Google define it (Microsoft 365 offers nothing else), or OAUTHBEARER
// (RFC 7628) for a server that offers only that.
type tokenClient struct {
	user, token string
	mech        string // "" until ChooseMechanism: XOAUTH2
	refused     func()
}

// ChooseMechanism is called by relay and IMAP reader with the mechanisms
// the server offers, before Start.
func (c *tokenClient) ChooseMechanism(offered []string) {
	c.mech = ""
	for _, m := range offered {
		switch strings.ToUpper(m) {
		case "XOAUTH2":
			c.mech = "XOAUTH2"
			return
		case sasl.OAuthBearer:
			c.mech = sasl.OAuthBearer
		}
	}
}

func (c *tokenClient) Start() (string, []byte, error) {
	if c.mech == sasl.OAuthBearer {
		return sasl.OAuthBearer, []byte("n,a=" + c.user + ",\x01auth=Bearer " + c.token + "\x01\x01"), nil
	}
	return "XOAUTH2", []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

// Next gets the server's only challenge: the token was refused, and why (a
// JSON status, in both mechanisms). The exchange is cancelled with an error
// that says so: the empty response the mechanisms expect reaches IMAP
// servers as "=" through go-imap, which Dovecot answers with a confusing
// BAD about base64.
func (c *tokenClient) Next(challenge []byte) ([]byte, error) {
	if c.refused != nil {
		c.refused()
	}
	var status sasl.OAuthBearerError
	json.Unmarshal(challenge, &status)
	why := "status " + status.Status
	if status.Status == "" {
		why = "no reason given"
	}
	if status.Scope != "" {
		why += ", scope " + status.Scope
	}
	return nil, fmt.Errorf("the provider refused the OAuth 2.0 access token for %s (%s): is SMTP AUTH or IMAP allowed for the mailbox, and does the app registration have the permission?", c.user, why)
}

func runOAuth2Login(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	account := fs.String("account", "", "the [[account]] username to sign in for")
	device := fs.Bool("device", false, "sign in with a code on any device (Microsoft; the default where the provider offers it)")
	browser := fs.Bool("browser", false, "sign in in a browser on this machine (Google; any provider)")
	listen := fs.String("listen", "127.0.0.1:0", "with --browser: where the browser is sent back to (forward this port to sign in from elsewhere)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *account == "" {
		return usagef("needs --account NAME and no arguments")
	}
	if *device && *browser {
		return usagef("--device and --browser exclude each other")
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	var acct *AccountConfig
	for i := range cfg.Accounts {
		if cfg.Accounts[i].Username == *account {
			acct = &cfg.Accounts[i]
		}
	}
	if acct == nil {
		return fmt.Errorf("no [[account]] with username %q in %s", *account, cfg.Path)
	}
	if acct.UpstreamAuth != "oauth2" {
		return fmt.Errorf("account %q logs in with a password: set upstream_auth = \"oauth2\" in its [[account]] first", *account)
	}
	conf, err := oauth2Settings(cfg)
	if err != nil {
		return err
	}
	useDevice := *device || (!*browser && conf.Endpoint.DeviceAuthURL != "")
	if useDevice && conf.Endpoint.DeviceAuthURL == "" {
		return errors.New("the provider offers no device sign-in (device_auth_url): use --browser")
	}
	if !useDevice && conf.Endpoint.AuthURL == "" {
		return errors.New("the provider offers no browser sign-in (auth_url): use --device")
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, oauth2HTTP)
	var tok *oauth2.Token
	if useDevice {
		tok, err = deviceLogin(hctx, c, conf, acct.UpstreamUsername)
	} else {
		tok, err = browserLogin(hctx, c, conf, cfg.OAuth2.Provider, acct.UpstreamUsername, *listen)
	}
	if err != nil {
		return err
	}
	if tok.RefreshToken == "" {
		return errors.New("the provider granted access but no refresh token, so sealpost could not go on after an hour: check that the scopes include offline_access (Microsoft), or remove sealpost's access in the account's security settings and sign in again (Google)")
	}
	withExpiry(tok)
	path := grantPath(cfg, acct.Username)
	unlock, err := lockGrant(path)
	if err != nil {
		return err
	}
	err = saveGrant(path, tok)
	unlock()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Signed in. The grant is in %s (keep it secret: it lets sealpost send and read %s's mail).\n"+
		"A running sealpost uses it at its next connection; sealpost check logs in with it now.\n", path, acct.UpstreamUsername)
	return nil
}

func deviceLogin(ctx context.Context, c *cli, conf *oauth2.Config, user string) (*oauth2.Token, error) {
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return nil, fmt.Errorf("ask the provider for a sign-in code: %w", err)
	}
	until := ""
	if !da.Expiry.IsZero() {
		until = " before " + da.Expiry.Local().Format("15:04")
	}
	where := da.VerificationURI
	if da.VerificationURIComplete != "" {
		where = da.VerificationURIComplete
	}
	fmt.Fprintf(c.stdout, "To let sealpost send and read mail as %s: on any device, open\n  %s\nand enter the code %s%s, signing in as %s. Waiting...\n", user, where, da.UserCode, until, user)
	tok, err := conf.DeviceAccessToken(ctx, da)
	if err != nil {
		return nil, fmt.Errorf("sign-in not completed: %w", err)
	}
	return tok, nil
}

func browserLogin(ctx context.Context, c *cli, conf *oauth2.Config, provider, user, listen string) (*oauth2.Token, error) {
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
	c2 := *conf
	c2.RedirectURL = "http://" + addr.String() + "/"
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("login_hint", user)}
	switch provider {
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
	fmt.Fprintf(c.stdout, "To let sealpost send and read mail as %s, open this address in a browser on this machine and sign in as %s:\n  %s\n"+
		"(On a server without a browser, forward the port first: ssh -L %d:127.0.0.1:%d THIS-SERVER, then open the address on your computer.)\nWaiting...\n",
		user, user, authURL, port, port)

	// The browser's return is handed to this goroutine, which exchanges the
	// code and tells the page how that went.
	type callback struct {
		code, refused string
		outcome       chan error
	}
	calls := make(chan callback)
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
	defer func() {
		// Shutdown, not Close: the page with the outcome is still being written.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		cancel()
	}()
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

// keepOwner gives path the owner of like when root writes it (an admin's sudo
// in a folder of the service user's); otherwise the file is the writer's.
func keepOwner(path, like string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(like)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		os.Chown(path, int(st.Uid), int(st.Gid))
	}
}
