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

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/rules"
)

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// newKey makes a Curve25519 key (fast) for email, created at created, with
// an optional lifetime.
func newKey(t testing.TB, email string, created time.Time, lifetime time.Duration) *openpgp.Entity {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, Time: func() time.Time { return created },
		KeyLifetimeSecs: uint32(lifetime.Seconds())}
	e, err := openpgp.NewEntity("Client", "", email, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func armored(t testing.TB, e *openpgp.Entity) []byte { return testutil.ArmoredPublicKey(t, e) }

func newKeyring(t testing.TB, path string) *Keyring {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "keyring.db")
	}
	k, err := OpenKeyring(path, KeyringOptions{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func TestLookup(t *testing.T) {
	ctx := context.Background()
	k := newKeyring(t, "")
	usable := newKey(t, "anna@client.example", testNow.AddDate(-1, 0, 0), 0)
	expired := newKey(t, "old@client.example", testNow.AddDate(-2, 0, 0), 365*24*time.Hour)
	noEnc := newKey(t, "signonly@client.example", testNow.AddDate(-1, 0, 0), 0)
	noEnc.Subkeys = nil
	subExpired := newKey(t, "subkey@client.example", testNow.AddDate(-2, 0, 0), 0)
	life := uint32(24 * 3600)
	subExpired.Subkeys[0].Sig.KeyLifetimeSecs = &life
	if err := subExpired.Subkeys[0].Sig.SignKey(subExpired.Subkeys[0].PublicKey, subExpired.PrivateKey, nil); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*openpgp.Entity{usable, expired, noEnc, subExpired} {
		if _, err := k.Import(ctx, bytes.NewReader(armored(t, e)), "test"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		address string
		status  rules.KeyStatus
		detail  string
	}{
		{"anna@client.example", rules.KeyUsable, ""},
		{"Anna <ANNA@Client.Example>", rules.KeyUsable, ""},
		{"anna+x@client.example", rules.KeyNone, ""},
		{"nobody@client.example", rules.KeyNone, ""},
		{"old@client.example", rules.KeyExpired, "expired on " + testNow.AddDate(-1, 0, 0).Format("2006-01-02")},
		{"signonly@client.example", rules.KeyUnusable, "no encryption-capable subkey"},
		{"subkey@client.example", rules.KeyExpired, "encryption subkey expired on"},
	}
	for _, tt := range tests {
		l, err := k.Lookup(ctx, tt.address)
		if err != nil {
			t.Fatal(err)
		}
		if l.Status != tt.status || !strings.Contains(l.Detail, tt.detail) {
			t.Errorf("%s: %s %q, want %s %q", tt.address, l.Status, l.Detail, tt.status, tt.detail)
		}
		if l.Status == rules.KeyUsable && l.Fingerprint != Fingerprint(usable) {
			t.Errorf("%s: fingerprint %s", tt.address, l.Fingerprint)
		}
	}
	list, err := k.List(ctx)
	if err != nil || len(list) != 4 {
		t.Fatalf("list: %d keys, %v", len(list), err)
	}
}

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

func TestNewestUsableKeyWins(t *testing.T) {
	ctx := context.Background()
	k := newKeyring(t, "")
	old := newKey(t, "anna@client.example", testNow.AddDate(-3, 0, 0), 0)
	newer := newKey(t, "anna@client.example", testNow.AddDate(-1, 0, 0), 0)
	newest := newKey(t, "anna@client.example", testNow.AddDate(0, -1, 0), 0)
	newest.RevokeKey(packet.KeySuperseded, "", &packet.Config{Time: func() time.Time { return testNow.AddDate(0, 0, -1) }})
	var all bytes.Buffer
	all.Write(armored(t, old))
	all.Write(armored(t, newer))
	all.Write(armored(t, newest))
	infos, err := k.Import(ctx, &all, "file")
	if err != nil || len(infos) != 3 {
		t.Fatalf("import of three keys in one file: %d, %v", len(infos), err)
	}
	if l, _ := k.Lookup(ctx, "anna@client.example"); l.Fingerprint != Fingerprint(newer) {
		t.Errorf("chose %s, want the newest usable key %s", l.Fingerprint, Fingerprint(newer))
	}
	if err := k.Remove(ctx, Fingerprint(newer)); err != nil {
		t.Fatal(err)
	}
	if l, _ := k.Lookup(ctx, "anna@client.example"); l.Fingerprint != Fingerprint(old) {
		t.Errorf("after removal chose %s", l.Fingerprint)
	}
	if err := k.Remove(ctx, Fingerprint(newer)); err == nil {
		t.Error("removing a key twice succeeded")
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
	if _, err := k.Import(ctx, &priv, "x"); !errors.Is(err, ErrPrivateKey) {
		t.Errorf("armored private key: %v", err)
	}
	var bin bytes.Buffer
	e.SerializePrivate(&bin, nil)
	if _, err := k.Import(ctx, &bin, "x"); !errors.Is(err, ErrPrivateKey) {
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

func FuzzImport(f *testing.F) {
	e := newKey(f, "anna@client.example", testNow, 0)
	f.Add(armored(f, e))
	var bin bytes.Buffer
	e.Serialize(&bin)
	f.Add(bin.Bytes())
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	k := newKeyring(f, "")
	f.Fuzz(func(t *testing.T, data []byte) {
		k.Import(context.Background(), bytes.NewReader(data), "fuzz")
		k.Lookup(context.Background(), "anna@client.example")
	})
}
