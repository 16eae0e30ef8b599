package rules

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/store"
)

// The console's login codes (TOTP, RFC 6238) keep one secret per login in
// the registry's store, so every node that shares the registry accepts
// the same codes, and a code used on one node is used on all: the last
// time step taken is moved forward in one conditional UPDATE, which only
// one node's can win.
//
// The secret is encrypted as clients' passphrases are (AES-256-GCM under
// passphrase.key, which never goes into the database), bound to its login
// name: a copy of the database, or a row moved to another login, gives no
// code. The relay must read the secret to check a code, so whoever can
// read both data_dir's passphrase.key and the database (the service's
// user, root) can read every secret.

const totpSchema = `
CREATE TABLE IF NOT EXISTS console_totp (
	username  TEXT PRIMARY KEY,
	sealed    BLOB NOT NULL,
	since     TEXT NOT NULL,
	last_step INTEGER NOT NULL
);`

const totpSchemaPostgres = `
CREATE TABLE console_totp (
	username  TEXT COLLATE "C" PRIMARY KEY,
	sealed    BYTEA NOT NULL,
	since     TEXT COLLATE "C" NOT NULL,
	last_step BIGINT NOT NULL
);`

// LoginCodesTable is the table of login codes' secrets: its rows are
// replaced and deleted (the relay's role needs UPDATE and DELETE on it).
const LoginCodesTable = "console_totp"

// LoginCode is a login's TOTP secret (base32, as authenticator apps take
// it), since when it is on, and the last time step a code was taken for.
type LoginCode struct {
	Secret   string
	Since    time.Time
	LastStep int64
}

// loginCodes is the table's readiness, made at the first use.
type loginCodes struct {
	mu    sync.Mutex
	ready bool
}

// ensureLoginCodes makes the table when it is not there: with PostgreSQL
// under the store's lock, once.
func (r *Registry) ensureLoginCodes(ctx context.Context) error {
	r.codes.mu.Lock()
	defer r.codes.mu.Unlock()
	if r.codes.ready {
		return nil
	}
	var err error
	if r.postgres {
		err = store.EnsureSchema(ctx, r.db, LoginCodesTable, totpSchemaPostgres)
	} else {
		_, err = r.db.ExecContext(ctx, totpSchema)
	}
	if err != nil {
		return fmt.Errorf("login codes: %w: %w (with [store] postgres, `sealpost store init` as the tables' owner makes the table)", ErrUnavailable, err)
	}
	r.codes.ready = true
	return nil
}

// EnsureLoginCodes makes the login codes' table now (store init, store
// migrate) rather than at the first login.
func (r *Registry) EnsureLoginCodes(ctx context.Context) error { return r.ensureLoginCodes(ctx) }

func loginCodeAD(user string) []byte { return []byte("sealpost login code v1\x00" + user) }

// LoginCode is user's secret; ok is false when the login has none.
func (r *Registry) LoginCode(ctx context.Context, user string) (LoginCode, bool, error) {
	if err := r.ensureLoginCodes(ctx); err != nil {
		return LoginCode{}, false, err
	}
	var sealed []byte
	var since string
	var c LoginCode
	err := r.db.QueryRowContext(ctx, `SELECT sealed, since, last_step FROM console_totp WHERE username = ?`, user).Scan(&sealed, &since, &c.LastStep)
	if errors.Is(err, sql.ErrNoRows) {
		return LoginCode{}, false, nil
	}
	if err != nil {
		return LoginCode{}, false, fmt.Errorf("login codes: %w: %w", ErrUnavailable, err)
	}
	key, err := r.keys.get(r.keyPath(), false)
	if err != nil {
		return LoginCode{}, false, fmt.Errorf("login codes: %w", err)
	}
	if c.Secret, err = openSealed(key, loginCodeAD(user), sealed); err != nil {
		return LoginCode{}, false, fmt.Errorf("login codes: the secret of %s does not decrypt: passphrase.key is not the key it was stored with, or its row was altered or moved", user)
	}
	c.Since, _ = time.Parse(time.RFC3339Nano, since)
	return c, true, nil
}

// SetLoginCode keeps user's secret, replacing any it had.
func (r *Registry) SetLoginCode(ctx context.Context, user string, c LoginCode) error {
	if err := r.ensureLoginCodes(ctx); err != nil {
		return err
	}
	key, err := r.keys.get(r.keyPath(), true)
	if err != nil {
		return fmt.Errorf("login codes: %w", err)
	}
	sealed, err := sealWith(key, loginCodeAD(user), c.Secret)
	if err != nil {
		return fmt.Errorf("login codes: %w", err)
	}
	_, err = r.db.ExecContext(ctx, `INSERT INTO console_totp (username, sealed, since, last_step) VALUES (?, ?, ?, ?)
		ON CONFLICT (username) DO UPDATE SET sealed = excluded.sealed, since = excluded.since, last_step = excluded.last_step`,
		user, sealed, c.Since.UTC().Format(time.RFC3339Nano), c.LastStep)
	if err != nil {
		return fmt.Errorf("login codes: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// UseLoginCodeStep takes the code of time step for user: false when a
// code of this step or a later one was taken already (on any node).
func (r *Registry) UseLoginCodeStep(ctx context.Context, user string, step int64) (bool, error) {
	if err := r.ensureLoginCodes(ctx); err != nil {
		return false, err
	}
	res, err := r.db.ExecContext(ctx, `UPDATE console_totp SET last_step = ? WHERE username = ? AND last_step < ?`, step, user, step)
	if err != nil {
		return false, fmt.Errorf("login codes: %w: %w", ErrUnavailable, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("login codes: %w: %w", ErrUnavailable, err)
	}
	return n == 1, nil
}

// RemoveLoginCode forgets user's secret; removed is false when it had none.
func (r *Registry) RemoveLoginCode(ctx context.Context, user string) (removed bool, err error) {
	if err := r.ensureLoginCodes(ctx); err != nil {
		return false, err
	}
	res, err := r.db.ExecContext(ctx, `DELETE FROM console_totp WHERE username = ?`, user)
	if err != nil {
		return false, fmt.Errorf("login codes: %w: %w", ErrUnavailable, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("login codes: %w: %w", ErrUnavailable, err)
	}
	return n > 0, nil
}
