package rules

import (
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the registry is SQLite without cgo

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/sqlstmt"
	"github.com/sealpost/sealpost/record"
)

// Registry is the consent registry: who consented in writing to
// unencrypted email, on what evidence, and who revoked it. It is a history
// of events; nothing is ever updated in place or deleted (the database
// refuses it), because the history is part of the clinical record.
//
// The CLI and the running relay open the same file: every lookup reads the
// database, so a revocation counts from the very next recipient.
type Registry struct {
	db   *sql.DB
	q    *sqlstmt.Cache // the per-recipient query, prepared
	path string
}

const dateLayout = "2006-01-02"

const schema = `
CREATE TABLE IF NOT EXISTS consent_events (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	kind        TEXT NOT NULL CHECK (kind IN ('given', 'revoked')),
	client      TEXT NOT NULL DEFAULT '',
	signed      TEXT NOT NULL DEFAULT '',
	evidence    TEXT NOT NULL DEFAULT '',
	expires     TEXT NOT NULL DEFAULT '',
	reason      TEXT NOT NULL DEFAULT '',
	recorded_by TEXT NOT NULL,
	recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS consent_addresses (
	event_id INTEGER NOT NULL REFERENCES consent_events(id),
	address  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS consent_addresses_by_address ON consent_addresses(address, event_id);
CREATE TRIGGER IF NOT EXISTS consent_events_append_only_u BEFORE UPDATE ON consent_events
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TRIGGER IF NOT EXISTS consent_events_append_only_d BEFORE DELETE ON consent_events
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TRIGGER IF NOT EXISTS consent_addresses_append_only_u BEFORE UPDATE ON consent_addresses
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TRIGGER IF NOT EXISTS consent_addresses_append_only_d BEFORE DELETE ON consent_addresses
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TABLE IF NOT EXISTS acknowledgements (
	account TEXT NOT NULL,
	address TEXT NOT NULL,
	sent_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS acknowledgements_by_address ON acknowledgements(account, address, sent_at);
`

// OpenRegistry opens (creating if needed) the registry at path.
func OpenRegistry(path string) (*Registry, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("consent registry %s: %w", path, err)
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("consent registry %s: %w", path, err)
	}
	return &Registry{db: db, q: sqlstmt.New(db), path: path}, nil
}

func (r *Registry) Close() error {
	r.q.Close()
	return r.db.Close()
}

// ConsentState is an address's standing in the registry.
type ConsentState string

const (
	ConsentNone    ConsentState = "none"
	ConsentActive  ConsentState = "active"
	ConsentRevoked ConsentState = "revoked"
	ConsentExpired ConsentState = "expired"
)

// ConsentStatus is what the registry says about one address now.
type ConsentStatus struct {
	Address string
	State   ConsentState
	// Given is the consent event the address's standing rests on (for
	// Active and Expired), or the last one before a revocation.
	Given *record.ConsentEvent
	// Revoked is the revocation, for Revoked.
	Revoked *record.ConsentEvent
}

// Current returns the address's consent standing at now. An error means
// the registry could not be read; it wraps ErrUnavailable.
func (r *Registry) Current(ctx context.Context, address string, now time.Time) (ConsentStatus, error) {
	n, err := addr.Normalize(address)
	if err != nil {
		return ConsentStatus{}, err
	}
	st := ConsentStatus{Address: n, State: ConsentNone}
	rows, err := r.q.QueryContext(ctx, `SELECT e.id, e.kind, e.client, e.signed, e.evidence, e.expires, e.reason, e.recorded_by, e.recorded_at
		FROM consent_addresses a JOIN consent_events e ON e.id = a.event_id
		WHERE a.address = ? ORDER BY e.id DESC LIMIT 2`, n)
	if err != nil {
		return st, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	var evs []*record.ConsentEvent
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return st, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
		}
		ev.Addresses = []string{n}
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	if len(evs) == 0 {
		return st, nil
	}
	last := evs[0]
	if last.Kind == "revoked" {
		st.State, st.Revoked = ConsentRevoked, last
		if len(evs) > 1 && evs[1].Kind == "given" {
			st.Given = evs[1]
		}
		return st, nil
	}
	st.Given = last
	if expired(last.Expires, now) {
		st.State = ConsentExpired
	} else {
		st.State = ConsentActive
	}
	return st, nil
}

// expired: a consent is valid through its expiry date, in local time.
func expired(expires string, now time.Time) bool {
	if expires == "" {
		return false
	}
	return now.Format(dateLayout) > expires
}

type scanner interface{ Scan(...any) error }

func scanEvent(s scanner) (*record.ConsentEvent, error) {
	var ev record.ConsentEvent
	var at string
	if err := s.Scan(&ev.ID, &ev.Kind, &ev.Client, &ev.Signed, &ev.Evidence, &ev.Expires, &ev.Reason, &ev.RecordedBy, &at); err != nil {
		return nil, err
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return nil, fmt.Errorf("event %d: bad time %q", ev.ID, at)
	}
	ev.RecordedAt = t
	return &ev, nil
}

// ValidationError lists what is wrong with a consent or an import, so the
// admin can fix all of it at once.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return fmt.Sprintf("%d problems:\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// checkGiven validates and normalises a consent before it is recorded.
func checkGiven(ev *record.ConsentEvent, now time.Time) []string {
	var problems []string
	if len(ev.Addresses) == 0 {
		problems = append(problems, "no address")
	}
	for i, a := range ev.Addresses {
		n, err := addr.Normalize(a)
		if err != nil {
			problems = append(problems, fmt.Sprintf("address %q: %v", a, err))
			continue
		}
		ev.Addresses[i] = n
	}
	if strings.TrimSpace(ev.Evidence) == "" {
		problems = append(problems, "evidence is empty: say which form the client signed and where the signed copy is kept")
	}
	signedOK := false
	if ev.Signed == "" {
		problems = append(problems, "the date the client signed is missing")
	} else if d, err := time.Parse(dateLayout, ev.Signed); err != nil {
		problems = append(problems, fmt.Sprintf("signed date %q is not YYYY-MM-DD", ev.Signed))
	} else if d.After(now) {
		problems = append(problems, fmt.Sprintf("signed date %s is in the future", ev.Signed))
	} else {
		signedOK = true
	}
	if ev.Expires != "" {
		if _, err := time.Parse(dateLayout, ev.Expires); err != nil {
			problems = append(problems, fmt.Sprintf("expiry %q is not YYYY-MM-DD", ev.Expires))
		} else if signedOK && ev.Expires <= ev.Signed {
			problems = append(problems, fmt.Sprintf("expiry %s is not after the signing date %s", ev.Expires, ev.Signed))
		}
	}
	if strings.TrimSpace(ev.RecordedBy) == "" {
		problems = append(problems, "who recorded the consent is not known")
	}
	return problems
}

// Add records a consent. It returns the event as stored (with its id).
func (r *Registry) Add(ctx context.Context, ev record.ConsentEvent) (record.ConsentEvent, error) {
	now := time.Now()
	ev.Kind = "given"
	ev.Addresses = append([]string(nil), ev.Addresses...)
	if p := checkGiven(&ev, now); len(p) > 0 {
		return ev, &ValidationError{Problems: p}
	}
	err := r.inTx(ctx, func(tx *sql.Tx) error { return insertEvent(ctx, tx, &ev, now) })
	return ev, err
}

// Revoke records that the address's consent was withdrawn.
func (r *Registry) Revoke(ctx context.Context, address, reason, recordedBy string) (record.ConsentEvent, error) {
	now := time.Now()
	st, err := r.Current(ctx, address, now)
	if err != nil {
		return record.ConsentEvent{}, err
	}
	switch st.State {
	case ConsentNone:
		return record.ConsentEvent{}, fmt.Errorf("%s has no consent on file to revoke", st.Address)
	case ConsentRevoked:
		return record.ConsentEvent{}, fmt.Errorf("the consent of %s was already revoked on %s", st.Address, st.Revoked.RecordedAt.Local().Format(dateLayout))
	}
	if strings.TrimSpace(recordedBy) == "" {
		return record.ConsentEvent{}, errors.New("who recorded the revocation is not known")
	}
	ev := record.ConsentEvent{Kind: "revoked", Client: st.Given.Client, Addresses: []string{st.Address}, Reason: reason, RecordedBy: recordedBy}
	err = r.inTx(ctx, func(tx *sql.Tx) error { return insertEvent(ctx, tx, &ev, now) })
	return ev, err
}

func insertEvent(ctx context.Context, tx *sql.Tx, ev *record.ConsentEvent, now time.Time) error {
	ev.RecordedAt = now.UTC()
	res, err := tx.ExecContext(ctx, `INSERT INTO consent_events (kind, client, signed, evidence, expires, reason, recorded_by, recorded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, ev.Kind, ev.Client, ev.Signed, ev.Evidence, ev.Expires, ev.Reason, ev.RecordedBy,
		ev.RecordedAt.Format(time.RFC3339Nano))
	if err != nil {
		return err
	}
	if ev.ID, err = res.LastInsertId(); err != nil {
		return err
	}
	for _, a := range ev.Addresses {
		if _, err := tx.ExecContext(ctx, `INSERT INTO consent_addresses (event_id, address) VALUES (?, ?)`, ev.ID, a); err != nil {
			return err
		}
	}
	return nil
}

func (r *Registry) inTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("consent registry: %w", err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return fmt.Errorf("consent registry: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("consent registry: %w", err)
	}
	return nil
}

// Import reads consents from CSV with the header row
// address,name,signed,evidence,expires. Every bad row is reported with its
// line number, and then nothing of the file is recorded.
func (r *Registry) Import(ctx context.Context, in io.Reader, recordedBy string) (int, error) {
	now := time.Now()
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return 0, fmt.Errorf("line 1: %w", err)
	}
	want := []string{"address", "name", "signed", "evidence", "expires"}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	var problems []string
	for _, w := range want {
		if _, ok := col[w]; !ok {
			problems = append(problems, fmt.Sprintf("line 1: the header row lacks the column %q (expected %s)", w, strings.Join(want, ",")))
		}
	}
	if len(problems) > 0 {
		return 0, &ValidationError{Problems: problems}
	}
	var evs []record.ConsentEvent
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", line, err))
			continue
		}
		get := func(k string) string {
			if i := col[k]; i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		ev := record.ConsentEvent{Kind: "given", Client: get("name"), Addresses: []string{get("address")}, Signed: get("signed"),
			Evidence: get("evidence"), Expires: get("expires"), RecordedBy: recordedBy}
		for _, p := range checkGiven(&ev, now) {
			problems = append(problems, fmt.Sprintf("line %d: %s", line, p))
		}
		if len(ev.Addresses) == 1 {
			if prev, dup := seen[ev.Addresses[0]]; dup {
				problems = append(problems, fmt.Sprintf("line %d: %s is already on line %d", line, ev.Addresses[0], prev))
			}
			seen[ev.Addresses[0]] = line
		}
		evs = append(evs, ev)
	}
	if len(problems) > 0 {
		return 0, &ValidationError{Problems: append(problems, "nothing was imported")}
	}
	err = r.inTx(ctx, func(tx *sql.Tx) error {
		for i := range evs {
			if err := insertEvent(ctx, tx, &evs[i], now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(evs), nil
}

// ConsentEntry is one address's line in `sealpost consent list`.
type ConsentEntry struct {
	Address    string       `json:"address"`
	Client     string       `json:"client,omitempty"`
	State      ConsentState `json:"state"`
	Signed     string       `json:"signed,omitempty"`
	Evidence   string       `json:"evidence,omitempty"`
	Expires    string       `json:"expires,omitempty"`
	RecordedBy string       `json:"recorded_by"`
	RecordedAt time.Time    `json:"recorded_at"`
	Revoked    *time.Time   `json:"revoked,omitempty"`
	Reason     string       `json:"revocation_reason,omitempty"`
}

// List returns every address's current standing: only active consents,
// or with all, revoked and expired ones too.
func (r *Registry) List(ctx context.Context, all bool, now time.Time) ([]ConsentEntry, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT DISTINCT address FROM consent_addresses ORDER BY address`)
	if err != nil {
		return nil, fmt.Errorf("consent registry: %w", err)
	}
	var addrs []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			rows.Close()
			return nil, err
		}
		addrs = append(addrs, a)
	}
	rows.Close()
	var out []ConsentEntry
	for _, a := range addrs {
		st, err := r.Current(ctx, a, now)
		if err != nil {
			return nil, err
		}
		if !all && st.State != ConsentActive {
			continue
		}
		e := ConsentEntry{Address: a, State: st.State}
		if g := st.Given; g != nil {
			e.Client, e.Signed, e.Evidence, e.Expires, e.RecordedBy, e.RecordedAt = g.Client, g.Signed, g.Evidence, g.Expires, g.RecordedBy, g.RecordedAt
		}
		if rv := st.Revoked; rv != nil {
			t := rv.RecordedAt
			e.Revoked, e.Reason = &t, rv.Reason
			if e.Client == "" {
				e.Client = rv.Client
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// EventsSince returns the history after event id, oldest first: the archive
// copies it into the record.
func (r *Registry) EventsSince(ctx context.Context, id int64) ([]record.ConsentEvent, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT id, kind, client, signed, evidence, expires, reason, recorded_by, recorded_at
		FROM consent_events WHERE id > ? ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("consent registry: %w", err)
	}
	defer rows.Close()
	var out []record.ConsentEvent
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *ev)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		ar, err := r.db.QueryContext(ctx, `SELECT address FROM consent_addresses WHERE event_id = ? ORDER BY rowid`, out[i].ID)
		if err != nil {
			return nil, err
		}
		for ar.Next() {
			var a string
			ar.Scan(&a)
			out[i].Addresses = append(out[i].Addresses, a)
		}
		ar.Close()
	}
	return out, nil
}

// ClientAddresses returns every address ever recorded for a client name or
// chart id (exports by client use it).
func (r *Registry) ClientAddresses(ctx context.Context, client string) ([]string, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT DISTINCT a.address FROM consent_addresses a JOIN consent_events e ON e.id = a.event_id
		WHERE e.client = ? ORDER BY a.address`, client)
	if err != nil {
		return nil, fmt.Errorf("consent registry: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
