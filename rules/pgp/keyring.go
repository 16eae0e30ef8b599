// Package pgp keeps recipients' OpenPGP keys and encrypts messages to them as
// PGP/MIME (RFC 3156) that Thunderbird, GnuPG and Sequoia read. It implements
// rules.Keys and rules.Encrypter.
package pgp

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	_ "modernc.org/sqlite"

	"github.com/sealpost/sealpost/internal/addr"
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
	k := &Keyring{db: db, q: sqlstmt.New(db), now: opts.Now, gen: -1}
	if k.now == nil {
		k.now = time.Now
	}
	if opts.WKD != nil {
		k.wkd = newWKD(*opts.WKD)
	}
	return k, nil
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

// ErrPrivateKey refuses a secret key: the keyring holds public keys only.
var ErrPrivateKey = errors.New("this is a private (secret) key; import only the public key (gpg --export, sq key extract-cert)")

// Import reads keys (armored or binary, one or many) and revocation
// certificates, and merges them into the keyring: a key already there keeps
// every revocation it had.
func (k *Keyring) Import(ctx context.Context, r io.Reader, source string) ([]KeyInfo, error) {
	return k.importKeys(ctx, r, source, false)
}

// Propose stores keys that were offered rather than given by an admin (an
// Autocrypt header): they are not used until `sealpost keys accept`. A key
// already accepted stays accepted.
func (k *Keyring) Propose(ctx context.Context, r io.Reader, source string) ([]KeyInfo, error) {
	return k.importKeys(ctx, r, source, true)
}

// Accept makes a proposed key usable.
func (k *Keyring) Accept(ctx context.Context, fingerprint string) error {
	fpr := strings.ToUpper(strings.ReplaceAll(fingerprint, " ", ""))
	return k.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE keys SET proposed = 0 WHERE fingerprint = ?`, fpr)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("no key %s in the keyring", fpr)
		}
		return nil
	})
}

func (k *Keyring) importKeys(ctx context.Context, r io.Reader, source string, proposed bool) ([]KeyInfo, error) {
	data, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, err
	}
	packetsData, err := dearmor(data)
	if err != nil {
		return nil, err
	}
	var (
		entities    []*openpgp.Entity
		revocations []*packet.Signature
	)
	pr := packet.NewReader(bytes.NewReader(packetsData))
	for {
		p, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not an OpenPGP key: %w", err)
		}
		switch p := p.(type) {
		case *packet.PublicKey, *packet.PrivateKey:
			if _, secret := p.(*packet.PrivateKey); secret {
				return nil, ErrPrivateKey
			}
			pr.Unread(p)
			e, err := openpgp.ReadEntity(pr)
			if err != nil {
				return nil, fmt.Errorf("key: %w", err)
			}
			entities = append(entities, e)
		case *packet.Signature:
			if p.SigType == packet.SigTypeKeyRevocation {
				revocations = append(revocations, p)
				continue
			}
			return nil, errors.New("a signature that is not a key revocation certificate, outside any key")
		default:
			return nil, fmt.Errorf("unexpected OpenPGP packet %T outside a key", p)
		}
	}
	if len(entities) == 0 && len(revocations) == 0 {
		return nil, errors.New("no OpenPGP key in the input")
	}
	var infos []KeyInfo
	err = k.write(ctx, func(tx *sql.Tx) error {
		for _, e := range entities {
			if e.PrivateKey != nil {
				return ErrPrivateKey
			}
			if err := storeEntity(ctx, tx, e, source, k.now(), proposed); err != nil {
				return err
			}
			info := k.describe(e, source, k.now())
			var stillProposed bool
			tx.QueryRowContext(ctx, `SELECT proposed FROM keys WHERE fingerprint = ?`, info.Fingerprint).Scan(&stillProposed)
			if stillProposed && info.Status == string(rules.KeyUsable) {
				info.Status, info.Detail = KeyProposed, proposedDetail
			}
			infos = append(infos, info)
		}
		for _, sig := range revocations {
			e, err := k.applyRevocation(ctx, tx, sig)
			if err != nil {
				return err
			}
			infos = append(infos, k.describe(e, "revocation", k.now()))
		}
		return nil
	})
	return infos, err
}

// dearmor returns the binary packets of armored or binary input (several
// armored blocks may follow each other).
func dearmor(data []byte) ([]byte, error) {
	// Armor may follow explanatory text (gpg's revocation certificates do).
	trimmed := bytes.TrimSpace(data)
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN PGP")) && !bytes.Contains(data, []byte("\n-----BEGIN PGP")) {
		return data, nil
	}
	// armor.Decode reads ahead, so each block is decoded on its own.
	var out bytes.Buffer
	blocks := bytes.Split(data, []byte("-----BEGIN PGP"))
	for _, b := range blocks[1:] {
		block, err := armor.Decode(bytes.NewReader(append([]byte("-----BEGIN PGP"), b...)))
		if err != nil {
			return nil, fmt.Errorf("armor: %w", err)
		}
		if block.Type == "PGP PRIVATE KEY BLOCK" {
			return nil, ErrPrivateKey
		}
		if _, err := io.Copy(&out, block.Body); err != nil {
			return nil, fmt.Errorf("armor: %w", err)
		}
	}
	return out.Bytes(), nil
}

// KeyProposed is the status of a key offered by an Autocrypt header and not
// yet accepted.
const (
	KeyProposed    = "proposed"
	proposedDetail = "offered in an Autocrypt header; not used until sealpost keys accept"
)

func storeEntity(ctx context.Context, tx *sql.Tx, e *openpgp.Entity, source string, now time.Time, proposed bool) error {
	fpr := Fingerprint(e)
	var old []byte
	err := tx.QueryRowContext(ctx, `SELECT data FROM keys WHERE fingerprint = ?`, fpr).Scan(&old)
	switch {
	case err == nil:
		if prev, err := openpgp.ReadEntity(packet.NewReader(bytes.NewReader(old))); err == nil {
			mergeEntity(prev, e)
		}
	case errors.Is(err, sql.ErrNoRows):
	default:
		return err
	}
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		return fmt.Errorf("key %s: %w", fpr, err)
	}
	ts := now.UTC().Format(time.RFC3339)
	// An admin's import accepts a proposed key; a proposal never demotes an
	// accepted one.
	if _, err := tx.ExecContext(ctx, `INSERT INTO keys (fingerprint, data, source, imported_at, updated_at, proposed) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(fingerprint) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at, proposed = MIN(proposed, excluded.proposed)`,
		fpr, buf.Bytes(), source, ts, ts, proposed); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM key_addresses WHERE fingerprint = ?`, fpr); err != nil {
		return err
	}
	for _, a := range entityAddresses(e) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO key_addresses (fingerprint, address) VALUES (?, ?)`, fpr, a); err != nil {
			return err
		}
	}
	return nil
}

// mergeEntity adds to e, an imported copy of a stored key, what the stored
// one knew, as OpenPGP certificates only ever grow: an older copy imported
// again must neither un-revoke the key, a subkey or a user ID, nor bring back
// a self-signature a newer one replaced (a later expiry, say).
func mergeEntity(prev, e *openpgp.Entity) {
	e.Revocations = mergeSigs(prev.Revocations, e.Revocations)
	e.Signatures = mergeSigs(prev.Signatures, e.Signatures)
	for name, pid := range prev.Identities {
		id, ok := e.Identities[name]
		if !ok {
			e.Identities[name] = pid
			continue
		}
		id.Signatures = mergeSigs(pid.Signatures, id.Signatures)
		id.Revocations = mergeSigs(pid.Revocations, id.Revocations)
		if pid.SelfSignature != nil && (id.SelfSignature == nil || pid.SelfSignature.CreationTime.After(id.SelfSignature.CreationTime)) {
			id.SelfSignature = pid.SelfSignature
		}
	}
	for _, psk := range prev.Subkeys {
		found := false
		for i := range e.Subkeys {
			sk := &e.Subkeys[i]
			if !bytes.Equal(psk.PublicKey.Fingerprint, sk.PublicKey.Fingerprint) {
				continue
			}
			found = true
			sk.Revocations = mergeSigs(psk.Revocations, sk.Revocations)
			if psk.Sig != nil && (sk.Sig == nil || psk.Sig.CreationTime.After(sk.Sig.CreationTime)) {
				sk.Sig = psk.Sig
			}
		}
		if !found {
			e.Subkeys = append(e.Subkeys, psk)
		}
	}
}

func sameIssuer(a, b *packet.Signature) bool {
	if a.IssuerKeyId == nil || b.IssuerKeyId == nil {
		return a.IssuerKeyId == b.IssuerKeyId
	}
	return *a.IssuerKeyId == *b.IssuerKeyId
}

func mergeSigs(a, b []*packet.Signature) []*packet.Signature {
	out := append([]*packet.Signature(nil), a...)
	for _, s := range b {
		dup := false
		for _, o := range out {
			if o.CreationTime.Equal(s.CreationTime) && o.SigType == s.SigType && sameIssuer(o, s) {
				dup = true
			}
		}
		if !dup {
			out = append(out, s)
		}
	}
	return out
}

// applyRevocation adds a standalone revocation certificate to the key it
// revokes, after checking that key made it.
func (k *Keyring) applyRevocation(ctx context.Context, tx *sql.Tx, sig *packet.Signature) (*openpgp.Entity, error) {
	rows, err := tx.QueryContext(ctx, `SELECT data FROM keys`)
	if err != nil {
		return nil, err
	}
	var candidates [][]byte
	for rows.Next() {
		var d []byte
		rows.Scan(&d)
		candidates = append(candidates, d)
	}
	rows.Close()
	for _, d := range candidates {
		e, err := openpgp.ReadEntity(packet.NewReader(bytes.NewReader(d)))
		if err != nil {
			continue
		}
		issued := (len(sig.IssuerFingerprint) > 0 && bytes.Equal(sig.IssuerFingerprint, e.PrimaryKey.Fingerprint)) ||
			(sig.IssuerKeyId != nil && *sig.IssuerKeyId == e.PrimaryKey.KeyId)
		if !issued {
			continue
		}
		if err := e.PrimaryKey.VerifyRevocationSignature(sig); err != nil {
			return nil, fmt.Errorf("the revocation certificate for %s does not verify: %w", Fingerprint(e), err)
		}
		e.Revocations = mergeSigs(e.Revocations, []*packet.Signature{sig})
		var buf bytes.Buffer
		if err := e.Serialize(&buf); err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET data = ?, updated_at = ? WHERE fingerprint = ?`, buf.Bytes(), k.now().UTC().Format(time.RFC3339), Fingerprint(e)); err != nil {
			return nil, err
		}
		return e, nil
	}
	return nil, errors.New("a revocation certificate for a key that is not in the keyring: import the key first")
}

// entityAddresses are the normalised email addresses of a key's user IDs.
func entityAddresses(e *openpgp.Entity) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range e.Identities {
		if id.UserId == nil {
			continue
		}
		email := id.UserId.Email
		if email == "" {
			email = id.UserId.Id // a bare "user@example.org" user ID
		}
		if n, err := addr.Normalize(email); err == nil && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

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

// Entities returns the keys with these fingerprints.
func (k *Keyring) Entities(ctx context.Context, fprs []string) (openpgp.EntityList, error) {
	return k.entities(ctx, fprs)
}

// Lookup implements rules.Keys: the newest usable key carrying the address,
// or why no key can be used. With WKD on, an address without a usable key is
// looked up in its domain's Web Key Directory (within a few seconds; a
// failure there only means no key).
func (k *Keyring) Lookup(ctx context.Context, address string) (rules.KeyLookup, error) {
	n, err := addr.Normalize(address)
	if err != nil {
		return rules.KeyLookup{Status: rules.KeyNone}, nil
	}
	l, err := k.lookupLocal(ctx, n)
	if err != nil || l.Status == rules.KeyUsable || k.wkd == nil {
		return l, err
	}
	if werr := k.wkdLookup(ctx, n); werr != nil {
		return l, nil
	}
	return k.lookupLocal(ctx, n)
}

func (k *Keyring) lookupLocal(ctx context.Context, n string) (rules.KeyLookup, error) {
	rows, err := k.q.QueryContext(ctx, `SELECT a.fingerprint FROM key_addresses a JOIN keys k ON k.fingerprint = a.fingerprint
		WHERE a.address = ? AND k.proposed = 0`, n)
	if err != nil {
		return rules.KeyLookup{}, fmt.Errorf("keyring: %w", err)
	}
	var fprs []string
	for rows.Next() {
		var f string
		rows.Scan(&f)
		fprs = append(fprs, f)
	}
	rows.Close()
	if len(fprs) == 0 {
		return rules.KeyLookup{Status: rules.KeyNone}, nil
	}
	es, err := k.entities(ctx, fprs)
	if err != nil {
		return rules.KeyLookup{}, fmt.Errorf("keyring: %w", err)
	}
	now := k.now()
	var best, fallback rules.KeyLookup
	var bestCreated, fallbackCreated time.Time
	for _, e := range es {
		status, detail := keyStatus(e, n, now)
		l := rules.KeyLookup{Status: status, Fingerprint: Fingerprint(e), Detail: detail}
		created := e.PrimaryKey.CreationTime
		if status == rules.KeyUsable {
			if best.Status == "" || created.After(bestCreated) {
				best, bestCreated = l, created
			}
		} else if fallback.Status == "" || created.After(fallbackCreated) {
			fallback, fallbackCreated = l, created
		}
	}
	if best.Status != "" {
		return best, nil
	}
	return fallback, nil
}

// keyStatus says whether e may encrypt to address now, and if not why.
func keyStatus(e *openpgp.Entity, address string, now time.Time) (rules.KeyStatus, string) {
	if e.Revoked(now) {
		return rules.KeyRevoked, revokedDetail(e.Revocations)
	}
	var idFound, idRevoked bool
	for _, id := range e.Identities {
		email := id.UserId.Email
		if email == "" {
			email = id.UserId.Id
		}
		if n, err := addr.Normalize(email); err == nil && n == address {
			idFound = true
			if id.Revoked(now) {
				idRevoked = true
			} else {
				idRevoked = false
				break
			}
		}
	}
	if !idFound {
		return rules.KeyNone, ""
	}
	if idRevoked {
		return rules.KeyRevoked, "the user ID for this address was revoked"
	}
	sig, _ := e.PrimarySelfSignature()
	if sig == nil {
		return rules.KeyUnusable, "it has no valid self-signature"
	}
	if e.PrimaryKey.KeyExpired(sig, now) {
		return rules.KeyExpired, "expired on " + expiry(e.PrimaryKey.CreationTime, sig.KeyLifetimeSecs).Format("2006-01-02")
	}
	if _, ok := e.EncryptionKey(now); ok {
		return rules.KeyUsable, ""
	}
	// No encryption key now: say whether they expired, were revoked, or never were.
	var lastExpiry time.Time
	revokedSub := false
	for _, sk := range e.Subkeys {
		if !sk.Sig.FlagsValid || !sk.Sig.FlagEncryptCommunications {
			continue
		}
		if sk.Revoked(now) {
			revokedSub = true
			continue
		}
		if sk.PublicKey.KeyExpired(sk.Sig, now) {
			if x := expiry(sk.PublicKey.CreationTime, sk.Sig.KeyLifetimeSecs); x.After(lastExpiry) {
				lastExpiry = x
			}
		}
	}
	switch {
	case !lastExpiry.IsZero():
		return rules.KeyExpired, "its encryption subkey expired on " + lastExpiry.Format("2006-01-02")
	case revokedSub:
		return rules.KeyRevoked, "its encryption subkey was revoked"
	}
	return rules.KeyUnusable, "it has no encryption-capable subkey"
}

func expiry(created time.Time, lifetime *uint32) time.Time {
	if lifetime == nil || *lifetime == 0 {
		return time.Time{}
	}
	return created.Add(time.Duration(*lifetime) * time.Second)
}

// revokedDetail describes the first revocation: the one a reader meets first.
func revokedDetail(sigs []*packet.Signature) string {
	if len(sigs) == 0 {
		return "revoked"
	}
	d := "revoked on " + sigs[0].CreationTime.Format("2006-01-02")
	if sigs[0].RevocationReasonText != "" {
		d += ": " + sigs[0].RevocationReasonText
	}
	return d
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
