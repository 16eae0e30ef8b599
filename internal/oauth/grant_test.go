package oauth

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/sealpost/sealpost/e2e"
)

// TestGrantRefresh: the access token comes from the grant file's refresh
// token and is reused while it lasts; a token the provider refused is
// refreshed at once; a refresh token another process spent (and replaced in
// the file at the same moment) is picked up from the file; a withdrawn grant
// tells the admin what to run, is not asked about again for a while, and a
// new sign-in is used at once.
func TestGrantRefresh(t *testing.T) {
	fake := e2e.StartFakeOAuth(t, "therapist@practice.example")
	dataDir := t.TempDir()
	provider := NewProvider(Settings{Provider: "custom", ClientID: fake.ClientID, AuthURL: fake.URL + "/authorize", TokenURL: fake.URL + "/token",
		DeviceAuthURL: fake.URL + "/devicecode", Scopes: []string{"mail", "offline_access"}}, dataDir)
	grants := NewGrants(slog.Default())
	path := GrantPath(dataDir, "therapist")
	if _, err := grants.For(provider, "therapist"); err == nil || !strings.Contains(err.Error(), "run sealpost oauth2 login --account therapist") {
		t.Fatalf("no grant file: %v", err)
	}
	if err := saveGrant(path, &oauth2.Token{RefreshToken: fake.NewGrant()}); err != nil {
		t.Fatal(err)
	}
	g, err := grants.For(provider, "therapist")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	token := func() string {
		t.Helper()
		at, err := g.accessToken(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	first := token()
	if again := token(); again != first || fake.Refreshes() != 1 {
		t.Fatalf("a valid access token was not reused (%d refreshes)", fake.Refreshes())
	}
	g.refused(first)
	if token() == first || fake.Refreshes() != 2 {
		t.Fatal("a refused access token was offered again")
	}

	// Another process refreshes with the same token and writes its new
	// one; the file's time happens to look unchanged.
	fi, _ := os.Stat(path)
	g.refused(g.tok.AccessToken)
	elsewhere := &oauth2.Token{RefreshToken: refreshedElsewhere(t, fake, g.tok.RefreshToken)}
	if err := saveGrant(path, elsewhere); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
	token()
	if rt := g.tok.RefreshToken; !fake.ValidRefreshToken(rt) {
		t.Error("the grant holds a spent refresh token")
	}

	fake.Revoke()
	g.refused(g.tok.AccessToken)
	_, err = g.accessToken(ctx)
	if err == nil || !strings.Contains(err.Error(), "no longer accepts the OAuth 2.0 grant") || !strings.Contains(err.Error(), "oauth2 login --account therapist") {
		t.Fatalf("withdrawn grant: %v", err)
	}
	asked := fake.TokenRequests()
	if _, err2 := g.accessToken(ctx); err2 == nil || err2.Error() != err.Error() || fake.TokenRequests() != asked {
		t.Errorf("the token endpoint was asked again at once (%d requests, then %d): %v", asked, fake.TokenRequests(), err2)
	}
	if err := saveGrant(path, &oauth2.Token{RefreshToken: fake.NewGrant()}); err != nil {
		t.Fatal(err)
	}
	token() // a new sign-in is tried at once
}

// refreshedElsewhere spends rt at the server, as a second process would.
func refreshedElsewhere(t *testing.T, fake *e2e.FakeOAuth, rt string) string {
	t.Helper()
	conf := &oauth2.Config{ClientID: fake.ClientID, Endpoint: oauth2.Endpoint{TokenURL: fake.URL + "/token"}}
	tok, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: rt, Expiry: time.Now().Add(-time.Hour)}).Token()
	if err != nil {
		t.Fatal(err)
	}
	return tok.RefreshToken
}

// TestGrantKeepsServiceOwner: root (an admin's sudo) writing the grant into
// the service user's data_dir leaves folder and file the service user's.
func TestGrantKeepsServiceOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own files as another user")
	}
	dataDir := t.TempDir()
	const uid, gid = 65534, 65534 // nobody, nogroup
	if err := os.Chown(dataDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dataDir, "oauth2", "therapist.json")
	for range 2 { // made, then replaced
		if err := saveGrant(path, &oauth2.Token{RefreshToken: "r"}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{filepath.Dir(path), path} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid || fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s: owner %d:%d mode %v; want %d:%d, private", p, st.Uid, st.Gid, fi.Mode(), uid, gid)
			}
		}
	}
}
