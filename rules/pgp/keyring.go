package pgp

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	_ "modernc.org/sqlite"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/internal/sqlstmt"
	"github.com/sealpost/sealpost/rules"
)

// Keyring is the recipients' public keys, in SQLite below data_dir so that
// `sealpost keys import` works while the relay runs: a key (or revocation)
// imported counts from the next lookup.
type Keyring struct {
	db  *sql.DB
	q   *sqlstmt.Cache // the per-recipient queries, prepared
	now func() time.Time

	mu    sync.Mutex
	gen   int64                      // the database's change counter when the cache was filled
	cache map[string]*openpgp.Entity // by fingerprint

	wkd *wkd // nil: no Web Key Directory lookups
}

// KeyringOptions adjust a keyring.
type KeyringOptions struct {
	Now func() time.Time
	// WKD, when set, looks up keys the keyring lacks in the recipient's
	// Web Key Directory ([pgp] wkd = true).
	WKD *WKDOptions
}

const keyringSchema = `
CREATE TABLE IF NOT EXISTS keys (
	fingerprint TEXT PRIMARY KEY,
	data        BLOB NOT NULL,
	source      TEXT NOT NULL,
	imported_at TEXT NOT NULL,
	updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS key_addresses (
	fingerprint TEXT NOT NULL REFERENCES keys(fingerprint) ON DELETE CASCADE,
	address     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS key_addresses_by_address ON key_addresses(address);
CREATE TABLE IF NOT EXISTS generation (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
INSERT OR IGNORE INTO generation (id, n) VALUES (1, 0);
`

// OpenKeyring opens (creating if needed) the keyring at path.
func OpenKeyring(path string, opts KeyringOptions) (*Keyring, error) {
	// SQLite would make it world-readable; its -wal and -shm copy its mode.
	if err := fsutil.CreatePrivate(path); err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	if _, err := db.Exec(keyringSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	// Keyrings made before proposed keys existed get the column.
	var hasProposed int
	db.QueryRow(`SELECT COUNT(*) FROM pragma_table_info('keys') WHERE name = 'proposed'`).Scan(&hasProposed)
	if hasProposed == 0 {
		if _, err := db.Exec(`ALTER TABLE keys ADD COLUMN proposed INTEGER NOT NULL DEFAULT 0`); err != nil {
			db.Close()
			return nil, fmt.Errorf("keyring %s: %w", path, err)
		}
	}
	return keyringOn(db, opts), nil
}

func keyringOn(db *sql.DB, opts KeyringOptions) *Keyring {
	k := &Keyring{db: db, q: sqlstmt.New(db), now: opts.Now, gen: -1}
	if k.now == nil {
		k.now = time.Now
	}
	if opts.WKD != nil {
		k.wkd = newWKD(*opts.WKD)
	}
	return k
}

func (k *Keyring) Close() error {
	k.q.Close()
	return k.db.Close()
}

// Fingerprint formats a key's fingerprint as sealpost shows it.
func Fingerprint(e *openpgp.Entity) string {
	return strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
}

// KeyInfo describes one key for `sealpost keys list`.
type KeyInfo struct {
	Fingerprint string     `json:"fingerprint"`
	UserIDs     []string   `json:"user_ids"`
	Algorithm   string     `json:"algorithm"`
	Created     time.Time  `json:"created"`
	Expires     *time.Time `json:"expires,omitempty"`
	Status      string     `json:"status"` // usable, expired, revoked, unusable
	Detail      string     `json:"detail,omitempty"`
	Source      string     `json:"source"`
	Imported    time.Time  `json:"imported"`
}

// KeyProposed is the status of a key offered by an Autocrypt header and not
// yet accepted.
const (
	KeyProposed    = "proposed"
	proposedDetail = "offered in an Autocrypt header; not used until sealpost keys accept"
)

func (k *Keyring) write(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := k.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE generation SET n = n + 1 WHERE id = 1`); err != nil {
		tx.Rollback()
		return fmt.Errorf("keyring: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	return nil
}

// Remove deletes a key.
func (k *Keyring) Remove(ctx context.Context, fingerprint string) error {
	fpr := strings.ToUpper(strings.ReplaceAll(fingerprint, " ", ""))
	return k.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM keys WHERE fingerprint = ?`, fpr)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("no key %s in the keyring", fpr)
		}
		return nil
	})
}

// entities returns the parsed keys by fingerprint, re-read when another
// process changed the keyring.
func (k *Keyring) entities(ctx context.Context, fprs []string) ([]*openpgp.Entity, error) {
	var gen int64
	if err := k.q.QueryRowScan(ctx, `SELECT n FROM generation WHERE id = 1`, nil, &gen); err != nil {
		return nil, err
	}
	return k.entitiesAt(ctx, gen, fprs)
}

// entitiesAt is entities with the change counter gen already read.
func (k *Keyring) entitiesAt(ctx context.Context, gen int64, fprs []string) ([]*openpgp.Entity, error) {
	k.mu.Lock()
	if gen != k.gen {
		k.cache, k.gen = map[string]*openpgp.Entity{}, gen
	}
	var missing []string
	out := make([]*openpgp.Entity, len(fprs))
	for i, f := range fprs {
		if e, ok := k.cache[f]; ok {
			out[i] = e
		} else {
			missing = append(missing, f)
		}
	}
	k.mu.Unlock()
	for _, f := range missing {
		var data []byte
		if err := k.q.QueryRowScan(ctx, `SELECT data FROM keys WHERE fingerprint = ?`, []any{f}, &data); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("no key %s in the keyring", f)
			}
			return nil, err
		}
		e, err := openpgp.ReadEntity(packet.NewReader(bytes.NewReader(data)))
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", f, err)
		}
		k.mu.Lock()
		if k.gen == gen {
			k.cache[f] = e
		}
		k.mu.Unlock()
		for i, want := range fprs {
			if want == f {
				out[i] = e
			}
		}
	}
	return out, nil
}

// Has reports whether an accepted key carries the address (whatever its
// state): it makes the address a client's. It never asks a Web Key Directory.
func (k *Keyring) Has(ctx context.Context, address string) (bool, error) {
	n, err := addr.Normalize(address)
	if err != nil {
		return false, nil
	}
	var one int
	err = k.q.QueryRowScan(ctx, `SELECT 1 FROM key_addresses a JOIN keys k ON k.fingerprint = a.fingerprint
		WHERE a.address = ? AND k.proposed = 0 LIMIT 1`, []any{n}, &one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("keyring: %w", err)
	}
	return true, nil
}

// List returns every key with its state now.
func (k *Keyring) List(ctx context.Context) ([]KeyInfo, error) {
	rows, err := k.db.QueryContext(ctx, `SELECT fingerprint, source, imported_at, proposed FROM keys ORDER BY fingerprint`)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	type row struct {
		fpr, source, imported string
		proposed              bool
	}
	var rs []row
	for rows.Next() {
		var r row
		rows.Scan(&r.fpr, &r.source, &r.imported, &r.proposed)
		rs = append(rs, r)
	}
	rows.Close()
	var out []KeyInfo
	for _, r := range rs {
		es, err := k.entities(ctx, []string{r.fpr})
		if err != nil {
			return nil, err
		}
		info := k.describe(es[0], r.source, k.now())
		info.Imported, _ = time.Parse(time.RFC3339, r.imported)
		if r.proposed && info.Status == string(rules.KeyUsable) {
			info.Status, info.Detail = KeyProposed, proposedDetail
		}
		out = append(out, info)
	}
	return out, nil
}

func (k *Keyring) describe(e *openpgp.Entity, source string, now time.Time) KeyInfo {
	info := KeyInfo{Fingerprint: Fingerprint(e), Algorithm: algorithm(e.PrimaryKey), Created: e.PrimaryKey.CreationTime, Source: source, Imported: now}
	for _, id := range e.Identities {
		info.UserIDs = append(info.UserIDs, id.Name)
	}
	sort.Strings(info.UserIDs)
	if sig, _ := e.PrimarySelfSignature(); sig != nil {
		if x := expiry(e.PrimaryKey.CreationTime, sig.KeyLifetimeSecs); !x.IsZero() {
			info.Expires = &x
		}
	}
	status, detail := rules.KeyUsable, ""
	for _, a := range entityAddresses(e) {
		status, detail = keyStatus(e, a, now)
		if status == rules.KeyUsable {
			break
		}
	}
	if len(entityAddresses(e)) == 0 {
		status, detail = rules.KeyUnusable, "no user ID with an email address"
	}
	info.Status, info.Detail = string(status), detail
	return info
}

func algorithm(pk *packet.PublicKey) string {
	bits, _ := pk.BitLength()
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly:
		return fmt.Sprintf("RSA %d", bits)
	case packet.PubKeyAlgoEdDSA:
		return "EdDSA (Ed25519)"
	case packet.PubKeyAlgoEd25519:
		return "Ed25519"
	case packet.PubKeyAlgoEd448:
		return "Ed448"
	case packet.PubKeyAlgoECDSA:
		return fmt.Sprintf("ECDSA %d", bits)
	case packet.PubKeyAlgoDSA:
		return fmt.Sprintf("DSA %d", bits)
	}
	return fmt.Sprintf("algorithm %d", pk.PubKeyAlgo)
}
