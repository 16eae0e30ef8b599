package pgp

import (
	"testing"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/internal/testutil"
)

// testPostgres, while set, makes newKeyring open keyrings in the shared
// PostgreSQL server: one database per path, so two handles on one path
// are two processes (or nodes) on one keyring.
var testPostgres struct {
	server *testutil.Postgres
	dbs    map[string]string
}

func openKeyringAt(t testing.TB, path string, opts KeyringOptions) (*Keyring, error) {
	t.Helper()
	if testPostgres.server == nil {
		return OpenKeyring(path, opts)
	}
	url, ok := testPostgres.dbs[path]
	if !ok {
		url = testPostgres.server.NewDatabase()
		testPostgres.dbs[path] = url
	}
	db, err := store.OpenPostgres(store.Postgres{URL: url})
	if err != nil {
		return nil, err
	}
	return OpenKeyringPostgres(db, opts)
}

// TestKeyringOnPostgres runs the keyring's behaviour tests again with the
// keyring in PostgreSQL.
func TestKeyringOnPostgres(t *testing.T) {
	testPostgres.server, testPostgres.dbs = testutil.StartPostgres(t), map[string]string{}
	defer func() { testPostgres.server = nil }()
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"RevocationTakesEffectAtOnce", TestRevocationTakesEffectAtOnce},
		{"ReimportKeepsNewerSelfSignature", TestReimportKeepsNewerSelfSignature},
		{"ImportRefusesPrivateKeysAndGarbage", TestImportRefusesPrivateKeysAndGarbage},
		{"Lookup", TestLookup},
		{"NewestUsableKeyWins", TestNewestUsableKeyWins},
		{"ProposedKeys", TestProposedKeys},
		{"AutocryptKey", TestAutocryptKey},
		{"EncryptRefusesUnusableKeys", TestEncryptRefusesUnusableKeys},
	} {
		t.Run(tc.name, tc.test)
	}
}
