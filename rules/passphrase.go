package rules

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules/sealed"
)

// Clients' passphrases for sealed PDFs are kept in passphrase_secrets, one
// row per address holding only the current one, encrypted with AES-256-GCM
// under a key in passphrase.key beside the registry. The address and the
// passphrase-set event's id are the associated data: a row copied to
// another address, or relabelled with another event, does not decrypt.
// Setting and removing a passphrase are events of the history like any
// consent (who, when, never the secret).
//
// What the key file protects against: a copy of registry.db alone (a
// backup, a support request) holds no passphrase anyone can read. What it
// does not: anyone who can read data_dir, the account sealpost runs as
// included, can read both files and so every passphrase; so can whoever
// can read the relay's memory.

// PassphraseKeyFile is the name of the key file beside registry.db.
const PassphraseKeyFile = "passphrase.key"

// passphraseKey is the registry's key for its secrets, read (or made) once.
type passphraseKey struct {
	mu  sync.Mutex
	key []byte
}

// errNoPassphraseKey: secrets are on file but the key file is gone.
var errNoPassphraseKey = errors.New("passphrase.key is missing beside the registry: the passphrases on file cannot be read")

// get returns the key, reading it from path, or making it there when
// create is set and there is none yet.
func (k *passphraseKey) get(path string, create bool) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key != nil {
		return k.key, nil
	}
	key, err := readPassphraseKey(path)
	if errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, errNoPassphraseKey
		}
		key, err = makePassphraseKey(path)
	}
	if err != nil {
		return nil, err
	}
	k.key = key
	return key, nil
}

func readPassphraseKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("%s does not hold a key (64 hexadecimal digits)", path)
	}
	return key, nil
}

// makePassphraseKey writes a new random key to path, unless another
// process (the relay, a second command) made one first: then that one is
// used. The file is made whole beside path and linked into place, which
// never replaces an existing key.
func makePassphraseKey(path string) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	tmp := path + ".new-" + strconv.Itoa(os.Getpid())
	if err := fsutil.WriteFileSync(tmp, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("make %s: %w", path, err)
	}
	// An admin's sudo in the service's data_dir: the relay must read the key.
	fsutil.KeepOwner(tmp, filepath.Dir(path))
	err := os.Link(tmp, path)
	os.Remove(tmp)
	if errors.Is(err, os.ErrExist) {
		return readPassphraseKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("make %s: %w", path, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return key, nil
}

func (r *Registry) keyPath() string { return filepath.Join(filepath.Dir(r.path), PassphraseKeyFile) }

// secretAD binds a stored secret to its address and event.
func secretAD(address string, eventID int64) []byte {
	return []byte("sealpost passphrase v1\x00" + address + "\x00" + strconv.FormatInt(eventID, 10))
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// sealSecret encrypts a passphrase for its row.
func sealSecret(key []byte, address string, eventID int64, secret string) ([]byte, error) {
	return sealWith(key, secretAD(address, eventID), secret)
}

// sealWith encrypts a secret bound to ad: a random nonce, then the
// ciphertext with its tag.
func sealWith(key, ad []byte, secret string) ([]byte, error) {
	g, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(secret)+g.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, []byte(secret), ad), nil
}

// errSecretAltered: a row does not decrypt as the address's, for this event.
var errSecretAltered = errors.New("a stored passphrase does not decrypt: passphrase.key is not the key it was stored with, or its row was altered or moved to another client")

func openSecret(key []byte, address string, eventID int64, sealedSecret []byte) (string, error) {
	return openSealed(key, secretAD(address, eventID), sealedSecret)
}

// openSealed decrypts what sealWith made with the same ad, or fails with
// errSecretAltered.
func openSealed(key, ad, sealedSecret []byte) (string, error) {
	g, err := newGCM(key)
	if err != nil {
		return "", err
	}
	if len(sealedSecret) < g.NonceSize()+g.Overhead() {
		return "", errSecretAltered
	}
	n := g.NonceSize()
	plain, err := g.Open(nil, sealedSecret[:n], sealedSecret[n:], ad)
	if err != nil {
		return "", errSecretAltered
	}
	return string(plain), nil
}

// checkPrepared makes sure what is stored is a passphrase sealed.CheckPassphrase
// accepts, already prepared: the PDF opens only with the prepared form.
func checkPrepared(prepared string) error {
	p, err := sealed.CheckPassphrase(prepared)
	if err != nil {
		return err
	}
	if p != prepared {
		return errors.New("the passphrase was not prepared (sealed.CheckPassphrase) before it was stored")
	}
	return nil
}

// normalizeAll normalises addresses, naming each one that is not one.
func normalizeAll(addresses []string) ([]string, []string) {
	var out, problems []string
	if len(addresses) == 0 {
		problems = append(problems, "no address")
	}
	for _, a := range addresses {
		n, err := addr.Normalize(a)
		if err != nil {
			problems = append(problems, fmt.Sprintf("address %q: %v", a, err))
			continue
		}
		out = append(out, n)
	}
	return out, problems
}

// SetPassphrase records a client's passphrase for sealed PDFs (prepared
// with sealed.CheckPassphrase), replacing any they had: one
// passphrase-set event for all their addresses, which it returns. The
// passphrase is in no error.
func (r *Registry) SetPassphrase(ctx context.Context, addresses []string, client, prepared, recordedBy string) (record.ConsentEvent, error) {
	now := time.Now()
	ns, problems := normalizeAll(addresses)
	if err := checkPrepared(prepared); err != nil {
		problems = append(problems, err.Error())
	}
	if strings.TrimSpace(recordedBy) == "" {
		problems = append(problems, "who recorded the passphrase is not known")
	}
	ev := record.ConsentEvent{Kind: record.PassphraseSet, Client: client, Addresses: ns, RecordedBy: recordedBy}
	if len(problems) > 0 {
		return ev, &ValidationError{Problems: problems}
	}
	key, err := r.keyForNewSecrets(ctx)
	if err != nil {
		return ev, fmt.Errorf("consent registry: %w", err)
	}
	err = r.inTx(ctx, func(tx *sql.Tx) error { return setPassphraseTx(ctx, tx, key, &ev, prepared, now) })
	return ev, err
}

// CheckPassphraseKey says whether the passphrases on file can be read:
// passphrase.key must be there, and open a stored secret, while any is.
func (r *Registry) CheckPassphraseKey(ctx context.Context) error {
	var address string
	err := r.db.QueryRowContext(ctx, `SELECT address FROM passphrase_secrets LIMIT 1`).Scan(&address)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if _, err := r.keyForNewSecrets(ctx); err != nil {
		return err
	}
	_, _, err = r.Passphrase(ctx, address)
	return err
}

// keyForNewSecrets is the key new secrets are stored under. It is made
// only while no secret is on file: a key file gone missing beside stored
// secrets is a lost or unrestored backup, and a new key would make every
// stored passphrase unreadable without a word.
func (r *Registry) keyForNewSecrets(ctx context.Context) ([]byte, error) {
	var stored int
	if err := r.db.QueryRowContext(ctx, `SELECT count(*) FROM passphrase_secrets`).Scan(&stored); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	key, err := r.keys.get(r.keyPath(), stored == 0)
	if errors.Is(err, errNoPassphraseKey) {
		return nil, fmt.Errorf("%w (%d on file): restore %s from the backup; if it is lost, remove those clients' passphrases (sealpost consent passphrase ADDRESS --remove) and set new ones", err, stored, r.keyPath())
	}
	return key, err
}

// setPassphraseTx appends a passphrase-set event and puts its secret in
// place of the addresses' old ones.
func setPassphraseTx(ctx context.Context, tx *sql.Tx, key []byte, ev *record.ConsentEvent, prepared string, now time.Time) error {
	if err := insertEvent(ctx, tx, ev, now); err != nil {
		return err
	}
	for _, a := range ev.Addresses {
		s, err := sealSecret(key, a, ev.ID, prepared)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO passphrase_secrets (address, event_id, sealed) VALUES (?, ?, ?)
			ON CONFLICT (address) DO UPDATE SET event_id = excluded.event_id, sealed = excluded.sealed`, a, ev.ID, s); err != nil {
			return err
		}
	}
	return nil
}

// RemovePassphrase withdraws the passphrases of addresses: a
// passphrase-removed event, and the secrets deleted. Every address must
// have one on file.
func (r *Registry) RemovePassphrase(ctx context.Context, addresses []string, recordedBy string) (record.ConsentEvent, error) {
	now := time.Now()
	ns, problems := normalizeAll(addresses)
	if strings.TrimSpace(recordedBy) == "" {
		problems = append(problems, "who recorded the removal is not known")
	}
	ev := record.ConsentEvent{Kind: record.PassphraseRemoved, Addresses: ns, RecordedBy: recordedBy}
	for _, a := range ns {
		st, err := r.Current(ctx, a, now)
		if err != nil {
			return ev, err
		}
		if st.Passphrase == nil {
			problems = append(problems, fmt.Sprintf("%s has no passphrase on file", a))
		} else if ev.Client == "" {
			ev.Client = st.Passphrase.Client
		}
	}
	if len(problems) > 0 {
		return ev, &ValidationError{Problems: problems}
	}
	err := r.inTx(ctx, func(tx *sql.Tx) error {
		if err := insertEvent(ctx, tx, &ev, now); err != nil {
			return err
		}
		for _, a := range ns {
			if _, err := tx.ExecContext(ctx, `DELETE FROM passphrase_secrets WHERE address = ?`, a); err != nil {
				return err
			}
		}
		return nil
	})
	return ev, err
}

// Passphrase returns the address's passphrase and the passphrase-set
// event it was recorded with; set is nil when none is on file. The secret
// is read as the history says it must be: the row of this address, for
// that event, decrypting with the key. An error wraps ErrUnavailable and
// names neither the address nor the secret.
func (r *Registry) Passphrase(ctx context.Context, address string) (secret string, set *record.ConsentEvent, err error) {
	n, err := addr.Normalize(address)
	if err != nil {
		return "", nil, err
	}
	// One read transaction: a replacement in between cannot pair one
	// passphrase's event with another's row.
	tx, err := r.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return "", nil, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	defer tx.Rollback()
	row := tx.QueryRowContext(ctx, `SELECT `+eventColumns+`
		FROM passphrase_addresses a JOIN consent_events e ON e.id = a.event_id
		WHERE a.address = ? ORDER BY e.id DESC LIMIT 1`, n)
	set, err = scanEvent(row)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	if set.Kind != record.PassphraseSet {
		return "", nil, nil
	}
	set.Addresses = []string{n}
	var eventID int64
	var stored []byte
	err = tx.QueryRowContext(ctx, `SELECT event_id, sealed FROM passphrase_secrets WHERE address = ?`, n).Scan(&eventID, &stored)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && eventID != set.ID) {
		return "", nil, fmt.Errorf("consent registry: %w: the passphrase the history names (event %d) is not the one stored", ErrUnavailable, set.ID)
	}
	if err != nil {
		return "", nil, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	key, err := r.keys.get(r.keyPath(), false)
	if err != nil {
		return "", nil, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	if secret, err = openSecret(key, n, set.ID, stored); err != nil {
		return "", nil, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	return secret, set, nil
}
