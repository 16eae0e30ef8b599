package pgp

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealpost/sealpost/rules"
)

// TestRevocationTakesEffectAtOnce: a revocation certificate imported by the
// CLI (another handle on the file) stops the relay's handle from using the
// key at its next lookup, and re-importing the old key does not undo it.
func TestRevocationTakesEffectAtOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keyring.db")
	relay := newKeyring(t, path)
	cli := newKeyring(t, path)
	e := newKey(t, "anna@client.example", testNow.AddDate(-1, 0, 0), 0)
	pub := armored(t, e)
	if _, err := cli.Import(ctx, bytes.NewReader(pub), "gpg"); err != nil {
		t.Fatal(err)
	}
	if l, _ := relay.Lookup(ctx, "anna@client.example"); l.Status != rules.KeyUsable {
		t.Fatalf("before revocation: %s", l.Status)
	}
	// A standalone revocation certificate, as gpg --gen-revoke writes it.
	if err := e.RevokeKey(packet.KeyCompromised, "laptop stolen", &packet.Config{Time: func() time.Time { return testNow.AddDate(0, -1, 0) }}); err != nil {
		t.Fatal(err)
	}
	var rev bytes.Buffer
	w, _ := armor.Encode(&rev, openpgp.PublicKeyType, map[string]string{"Comment": "This is a revocation certificate"})
	e.Revocations[0].Serialize(w)
	w.Close()
	if _, err := cli.Import(ctx, &rev, "revocation"); err != nil {
		t.Fatalf("import revocation: %v", err)
	}
	l, err := relay.Lookup(ctx, "anna@client.example")
	if err != nil || l.Status != rules.KeyRevoked || !strings.Contains(l.Detail, "laptop stolen") {
		t.Fatalf("after revocation: %s %q %v", l.Status, l.Detail, err)
	}
	if _, err := cli.Import(ctx, bytes.NewReader(pub), "gpg"); err != nil {
		t.Fatal(err)
	}
	if l, _ := relay.Lookup(ctx, "anna@client.example"); l.Status != rules.KeyRevoked {
		t.Fatalf("re-importing the old key un-revoked it: %s", l.Status)
	}
}

// TestReimportKeepsNewerSelfSignature: the client set their key to expire
// (a new self-signature); importing the old copy again (from an old email,
// a key server) must not make the expired key usable again.
func TestReimportKeepsNewerSelfSignature(t *testing.T) {
	ctx := context.Background()
	k := newKeyring(t, "")
	e := newKey(t, "anna@client.example", testNow.AddDate(-1, 0, 0), 0)
	oldCopy := armored(t, e)
	for _, id := range e.Identities {
		sig := *id.SelfSignature
		life := uint32((200 * 24 * time.Hour).Seconds()) // ran out 165 days ago
		sig.KeyLifetimeSecs = &life
		sig.CreationTime = testNow.AddDate(0, -8, 0)
		if err := sig.SignUserId(id.UserId.Id, e.PrimaryKey, e.PrivateKey, nil); err != nil {
			t.Fatal(err)
		}
		id.SelfSignature, id.Signatures = &sig, append(id.Signatures, &sig)
	}
	newCopy := armored(t, e)
	for i, imp := range []struct {
		copy []byte
		want rules.KeyStatus
	}{{oldCopy, rules.KeyUsable}, {newCopy, rules.KeyExpired}, {oldCopy, rules.KeyExpired}} {
		if _, err := k.Import(ctx, bytes.NewReader(imp.copy), "test"); err != nil {
			t.Fatal(err)
		}
		if l, _ := k.Lookup(ctx, "anna@client.example"); l.Status != imp.want {
			t.Fatalf("after import %d: %s (%s), want %s", i+1, l.Status, l.Detail, imp.want)
		}
	}
}

func TestImportRefusesPrivateKeysAndGarbage(t *testing.T) {
	ctx := context.Background()
	k := newKeyring(t, "")
	e := newKey(t, "anna@client.example", testNow, 0)
	var priv bytes.Buffer
	w, _ := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	e.SerializePrivate(w, nil)
	w.Close()
	if _, err := k.Import(ctx, &priv, "x"); !errors.Is(err, errPrivateKey) {
		t.Errorf("armored private key: %v", err)
	}
	var bin bytes.Buffer
	e.SerializePrivate(&bin, nil)
	if _, err := k.Import(ctx, &bin, "x"); !errors.Is(err, errPrivateKey) {
		t.Errorf("binary private key: %v", err)
	}
	for _, junk := range []string{"", "hello", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnotbase64\n-----END PGP PUBLIC KEY BLOCK-----\n"} {
		if _, err := k.Import(ctx, strings.NewReader(junk), "x"); err == nil {
			t.Errorf("%q imported", junk)
		}
	}
	if list, _ := k.List(ctx); len(list) != 0 {
		t.Errorf("%d keys after failed imports", len(list))
	}
}
