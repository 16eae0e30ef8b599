package main

import (
	"context"
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
// token; a refresh token another process spent (and replaced in the file at
// the same moment) is picked up from the file; a withdrawn grant tells the
// admin what to run.
func TestGrantRefresh(t *testing.T) {
	fake := e2e.StartFakeOAuth(t, "therapist@practice.example")
	fake.AccessLifetime = 5 // always due for a refresh
	cfg, err := LoadConfig(writeConfig(t, "upstream_username = \"therapist@practice.example\"\nupstream_auth = \"oauth2\"\n"+fake.ConfigTOML()))
	if err != nil {
		t.Fatal(err)
	}
	path := grantPath(cfg, "therapist")
	if _, err := grantFor(cfg, "therapist"); err == nil || !strings.Contains(err.Error(), "run sealpost oauth2 login --account therapist") {
		t.Fatalf("no grant file: %v", err)
	}
	if err := saveGrant(path, &oauth2.Token{RefreshToken: fake.NewGrant()}); err != nil {
		t.Fatal(err)
	}
	g, err := grantFor(cfg, "therapist")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := g.accessToken(ctx); err != nil {
		t.Fatal(err)
	}

	// Another process refreshes with the same token and writes its new
	// one; the file's time happens to look unchanged.
	fi, _ := os.Stat(path)
	elsewhere := &oauth2.Token{RefreshToken: refreshedElsewhere(t, fake, g.tok.RefreshToken)}
	if err := saveGrant(path, elsewhere); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(path, fi.ModTime(), fi.ModTime())
	if _, err := g.accessToken(ctx); err != nil {
		t.Fatalf("after another process refreshed: %v", err)
	}
	if rt := g.tok.RefreshToken; !fake.ValidRefreshToken(rt) {
		t.Error("the grant holds a spent refresh token")
	}

	fake.Revoke()
	_, err = g.accessToken(ctx)
	if err == nil || !strings.Contains(err.Error(), "no longer accepts the OAuth 2.0 grant") || !strings.Contains(err.Error(), "oauth2 login --account therapist") {
		t.Fatalf("withdrawn grant: %v", err)
	}
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
