package rules

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// The registry's tables. consent_events is the one history, in id order:
// consents given and revoked, passphrases set and removed, and professional
// recipients recorded and withdrawn. Consent events name their addresses
// in consent_addresses, passphrase events in passphrase_addresses,
// professional events in professional_addresses ("@domain" for a whole
// domain): a sealpost from before passphrases or professionals, opened on
// this file, never takes either for a client's consent to unencrypted email.
// passphrase_secrets holds only the current passphrases, encrypted
// (passphrase.go): it is the one table rows are replaced and deleted in.
const schema = `CREATE TABLE IF NOT EXISTS consent_events ` + eventsTable + `;` + otherTables

const eventsTable = `(
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	kind        TEXT NOT NULL CHECK (kind IN ('given', 'revoked', 'passphrase-set', 'passphrase-removed', 'professional-given', 'professional-revoked')),
	client      TEXT NOT NULL DEFAULT '',
	signed      TEXT NOT NULL DEFAULT '',
	evidence    TEXT NOT NULL DEFAULT '',
	expires     TEXT NOT NULL DEFAULT '',
	reason      TEXT NOT NULL DEFAULT '',
	recorded_by TEXT NOT NULL,
	recorded_at TEXT NOT NULL,
	prefer      TEXT NOT NULL DEFAULT '',
	no_hold     INTEGER NOT NULL DEFAULT 0
)`

const otherTables = `
CREATE TABLE IF NOT EXISTS consent_addresses (
	event_id INTEGER NOT NULL REFERENCES consent_events(id),
	address  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS consent_addresses_by_address ON consent_addresses(address, event_id);
CREATE TABLE IF NOT EXISTS passphrase_addresses (
	event_id INTEGER NOT NULL REFERENCES consent_events(id),
	address  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS passphrase_addresses_by_address ON passphrase_addresses(address, event_id);
CREATE TABLE IF NOT EXISTS professional_addresses (
	event_id INTEGER NOT NULL REFERENCES consent_events(id),
	address  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS professional_addresses_by_address ON professional_addresses(address, event_id);
CREATE INDEX IF NOT EXISTS consent_addresses_by_event ON consent_addresses(event_id);
CREATE INDEX IF NOT EXISTS passphrase_addresses_by_event ON passphrase_addresses(event_id);
CREATE INDEX IF NOT EXISTS professional_addresses_by_event ON professional_addresses(event_id);
CREATE TRIGGER IF NOT EXISTS professional_addresses_append_only_u BEFORE UPDATE ON professional_addresses
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TRIGGER IF NOT EXISTS professional_addresses_append_only_d BEFORE DELETE ON professional_addresses
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TABLE IF NOT EXISTS passphrase_secrets (
	address  TEXT PRIMARY KEY,
	event_id INTEGER NOT NULL REFERENCES consent_events(id),
	sealed   BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS consent_events_append_only_u BEFORE UPDATE ON consent_events
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TRIGGER IF NOT EXISTS consent_events_append_only_d BEFORE DELETE ON consent_events
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TRIGGER IF NOT EXISTS consent_addresses_append_only_u BEFORE UPDATE ON consent_addresses
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TRIGGER IF NOT EXISTS consent_addresses_append_only_d BEFORE DELETE ON consent_addresses
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TRIGGER IF NOT EXISTS passphrase_addresses_append_only_u BEFORE UPDATE ON passphrase_addresses
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TRIGGER IF NOT EXISTS passphrase_addresses_append_only_d BEFORE DELETE ON passphrase_addresses
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TABLE IF NOT EXISTS acknowledgements (
	account TEXT NOT NULL,
	address TEXT NOT NULL,
	sent_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS acknowledgements_by_address ON acknowledgements(account, address, sent_at);
`

// eventColumns are consent_events' columns as scanEvent reads them.
const eventColumns = `e.id, e.kind, e.client, e.signed, e.evidence, e.expires, e.reason, e.prefer, e.no_hold, e.recorded_by, e.recorded_at`

// migrate brings a registry written before passphrases or professionals
// up to the schema: its consent_events allows fewer kinds, and a CHECK
// constraint cannot be altered in SQLite, so the table is made anew with
// every row, id and time as it was (SQLite's "other kinds of table schema changes": foreign
// keys off, one transaction, the references checked before the commit).
// The append-only triggers belong to the old table and go with it; they
// are made again in the same transaction.
func migrate(ctx context.Context, db *sql.DB) error {
	old, err := oldEventsTable(ctx, db)
	if err != nil || !old {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
		return err
	}
	defer conn.ExecContext(context.Background(), `PRAGMA foreign_keys = ON`)
	// BEGIN IMMEDIATE: the CLI and the relay may open the file at once;
	// the second waits, then finds the work done.
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return err
	}
	if err := migrateEvents(ctx, conn); err != nil {
		conn.ExecContext(context.Background(), `ROLLBACK`)
		return err
	}
	_, err = conn.ExecContext(ctx, `COMMIT`)
	return err
}

func migrateEvents(ctx context.Context, conn *sql.Conn) error {
	var tableSQL string
	if err := conn.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'consent_events'`).Scan(&tableSQL); err != nil {
		return err
	}
	if strings.Contains(tableSQL, "professional-given") {
		return nil
	}
	columns := "id, kind, client, signed, evidence, expires, reason, recorded_by, recorded_at"
	if strings.Contains(tableSQL, "prefer") {
		columns += ", prefer"
	}
	steps := []string{
		`CREATE TABLE consent_events_new ` + eventsTable,
		`INSERT INTO consent_events_new (` + columns + `) SELECT ` + columns + ` FROM consent_events`,
		`DROP TABLE consent_events`,
		`ALTER TABLE consent_events_new RENAME TO consent_events`,
		schema, // the triggers, before anyone can write
	}
	for _, s := range steps {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	rows, err := conn.QueryContext(ctx, `PRAGMA foreign_key_check`)
	if err != nil {
		return err
	}
	defer rows.Close()
	if rows.Next() {
		return fmt.Errorf("migrate: consent_addresses names events that are not in consent_events")
	}
	return rows.Err()
}

// oldEventsTable says whether consent_events exists without the newest kinds.
func oldEventsTable(ctx context.Context, db *sql.DB) (bool, error) {
	var tableSQL string
	err := db.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'consent_events'`).Scan(&tableSQL)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !strings.Contains(tableSQL, "professional-given"), nil
}
