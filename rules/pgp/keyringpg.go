package pgp

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/rules"
)

// pgKeyringSchema is keyringSchema in PostgreSQL. The keyring is state,
// not history (a key removed is gone, a revocation replaces the key's
// data), so it has no append-only triggers. generation counts changes:
// every node reads it before using what it has parsed, so a key imported,
// revoked or removed on one node counts on all from their next lookup.
const pgKeyringSchema = `
CREATE TABLE keys (
	fingerprint TEXT COLLATE "C" PRIMARY KEY,
	data        BYTEA NOT NULL,
	source      TEXT COLLATE "C" NOT NULL,
	imported_at TEXT COLLATE "C" NOT NULL,
	updated_at  TEXT COLLATE "C" NOT NULL,
	proposed    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE key_addresses (
	fingerprint TEXT COLLATE "C" NOT NULL REFERENCES keys(fingerprint) ON DELETE CASCADE,
	address     TEXT COLLATE "C" NOT NULL
);
CREATE INDEX key_addresses_by_address ON key_addresses(address);
CREATE INDEX key_addresses_by_fingerprint ON key_addresses(fingerprint);
CREATE TABLE generation (id INTEGER PRIMARY KEY CHECK (id = 1), n BIGINT NOT NULL);
INSERT INTO generation (id, n) VALUES (1, 0);
`

// KeyringTables are the keyring's tables; the relay's role may change
// their rows (import, accept, revoke, remove).
var KeyringTables = []string{"keys", "key_addresses", "generation"}

// KeyringCopy is how `sealpost store migrate` copies the keyring. The
// change counter is not copied: the copy counts as a change of its own.
var KeyringCopy = []store.Table{
	{Name: "keys", Columns: "fingerprint, data, source, imported_at, updated_at, proposed", OrderBy: "fingerprint"},
	{Name: "key_addresses", Columns: "fingerprint, address", OrderBy: "fingerprint, address"},
}

// OpenKeyringPostgres opens the keyring in the shared PostgreSQL database
// db (store.OpenPostgres), creating its tables when they are not there.
// Close closes db.
func OpenKeyringPostgres(db *sql.DB, opts KeyringOptions) (*Keyring, error) {
	if err := store.EnsureSchema(context.Background(), db, "keys", pgKeyringSchema); err != nil {
		return nil, fmt.Errorf("keyring: %w: %w", rules.ErrUnavailable, err)
	}
	return keyringOn(db, opts), nil
}

// Touch counts a change the keyring did not make itself (a copy into it),
// so every node parses its keys again.
func (k *Keyring) Touch(ctx context.Context) error {
	return k.write(ctx, func(*sql.Tx) error { return nil })
}
