package pgp

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealpost/sealpost/internal/testutil"
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
	k, err := openKeyringAt(t, path, KeyringOptions{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
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
