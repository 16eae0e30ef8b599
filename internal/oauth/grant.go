package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/oauth2"

	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/internal/textutil"
)

// Grant is one account's OAuth 2.0 grant: the refresh token in its file, and
// the access token made from it while that lasts.
type Grant struct {
	path    string
	account string

	mu            sync.Mutex
	provider      *Provider
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

// Grants are the grants one process uses, one per file: the relay and the
// IMAP reader share it, so that a refresh token the provider rotates is
// replaced once, and a refresh that failed is not tried again by each of
// them. A reload of the configuration keeps them.
type Grants struct {
	log    *slog.Logger
	mu     sync.Mutex
	byPath map[string]*Grant
}

// NewGrants returns an empty set; log hears of refreshed grants that could
// not be kept.
func NewGrants(log *slog.Logger) *Grants {
	return &Grants{log: log, byPath: map[string]*Grant{}}
}

// For returns the account's grant at the provider, after checking that its
// file holds one (an admin who has not signed in yet learns it at start,
// not at the first message).
func (gs *Grants) For(p *Provider, account string) (*Grant, error) {
	path := GrantPath(p.dataDir, account)
	gs.mu.Lock()
	g, ok := gs.byPath[path]
	if !ok {
		g = &Grant{path: path, account: account}
		gs.byPath[path] = g
	}
	gs.mu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.provider, g.log = p, gs.log
	if err := g.loadLocked(false); err != nil {
		return nil, err
	}
	return g, nil
}

// loadLocked reads the file again when it changed (or when force is set):
// `sealpost oauth2 login` while sealpost runs takes effect at the next
// connection, and another process's refresh is not repeated.
func (g *Grant) loadLocked(force bool) error {
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

// accessToken returns a valid access token, refreshing it (and keeping a
// rotated refresh token) when it has expired.
func (g *Grant) accessToken(ctx context.Context) (string, error) {
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
	tok, err := g.provider.conf.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, g.provider.http), g.tok).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			err = fmt.Errorf("the provider no longer accepts the OAuth 2.0 grant in %s (%s): run sealpost oauth2 login --account %s", g.path, textutil.OneLine(re.ErrorDescription), g.account)
		} else {
			err = fmt.Errorf("OAuth 2.0 token from %s: %w", g.provider.conf.Endpoint.TokenURL, err)
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
func (g *Grant) refused(accessToken string) {
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
	fsutil.KeepOwner(f.Name(), filepath.Dir(path))
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
		fsutil.KeepOwner(dir, filepath.Dir(dir))
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
	fsutil.KeepOwner(f.Name(), dir)
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
