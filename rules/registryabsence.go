package rules

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sealpost/sealpost/rules/hours"
)

// Absences are a therapist's days away (sealpost away), kept in the
// registry as its other history is: appended, never changed. Cancelling an
// absence is an event of its own that names it. While one lasts the
// therapist's office hours are closed: mail to clients is held (where
// held at all) and the acknowledgement names the first day back.
const absenceSchema = `
CREATE TABLE IF NOT EXISTS absences (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	kind        TEXT NOT NULL CHECK (kind IN ('away', 'cancelled')),
	account     TEXT NOT NULL,
	from_day    TEXT NOT NULL DEFAULT '',
	until_day   TEXT NOT NULL DEFAULT '',
	note        TEXT NOT NULL DEFAULT '',
	cancels     INTEGER NOT NULL DEFAULT 0,
	recorded_by TEXT NOT NULL,
	recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS absences_by_account ON absences(account, id);
CREATE TRIGGER IF NOT EXISTS absences_append_only_u BEFORE UPDATE ON absences
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
CREATE TRIGGER IF NOT EXISTS absences_append_only_d BEFORE DELETE ON absences
	BEGIN SELECT RAISE(ABORT, 'the consent registry is append-only'); END;
`

// openHoursTables adds what office hours need to a registry: the
// absences, and consent_events' no_hold in a registry made before it
// (SQLite adds a column with a default in place; the append-only triggers
// stay).
func openHoursTables(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, absenceSchema); err != nil {
		return err
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_table_info('consent_events') WHERE name = 'no_hold'`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err := db.ExecContext(ctx, `ALTER TABLE consent_events ADD COLUMN no_hold INTEGER NOT NULL DEFAULT 0`)
	if err != nil && strings.Contains(err.Error(), "duplicate column") {
		return nil // another process added it meanwhile
	}
	return err
}

// Absence is one stretch of days a therapist is away.
type Absence struct {
	ID         int64     `json:"id"`
	Account    string    `json:"account"`
	From       string    `json:"from"`  // YYYY-MM-DD, the first day away
	Until      string    `json:"until"` // YYYY-MM-DD, the last day away
	Note       string    `json:"note,omitempty"`
	RecordedBy string    `json:"recorded_by"`
	RecordedAt time.Time `json:"recorded_at"`
}

// AddAbsence records that account is away from the day From to the day
// Until, both included.
func (r *Registry) AddAbsence(ctx context.Context, a Absence) (Absence, error) {
	from, err1 := hours.ParseDate(a.From)
	until, err2 := hours.ParseDate(a.Until)
	if err := errors.Join(err1, err2); err != nil {
		return a, &ValidationError{Problems: []string{err.Error()}}
	}
	if until.Before(from) {
		return a, &ValidationError{Problems: []string{fmt.Sprintf("the absence ends (%s) before it begins (%s)", until, from)}}
	}
	if a.Account == "" || a.RecordedBy == "" {
		return a, &ValidationError{Problems: []string{"an absence names its account and who recorded it"}}
	}
	a.From, a.Until, a.RecordedAt = from.String(), until.String(), time.Now().UTC()
	err := r.db.QueryRowContext(ctx, `INSERT INTO absences (kind, account, from_day, until_day, note, recorded_by, recorded_at) VALUES ('away', ?, ?, ?, ?, ?, ?) RETURNING id`,
		a.Account, a.From, a.Until, a.Note, a.RecordedBy, a.RecordedAt.Format(time.RFC3339Nano)).Scan(&a.ID)
	if err != nil {
		return a, fmt.Errorf("consent registry: %w", err)
	}
	return a, nil
}

// CancelAbsence records that absence id of account no longer stands.
func (r *Registry) CancelAbsence(ctx context.Context, account string, id int64, recordedBy string) error {
	var n int
	if err := r.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM absences WHERE id = ? AND account = ? AND kind = 'away'`, id, account).Scan(&n); err != nil {
		return fmt.Errorf("consent registry: %w", err)
	}
	if n == 0 {
		return &ValidationError{Problems: []string{fmt.Sprintf("account %s has no absence %d", account, id)}}
	}
	_, err := r.db.ExecContext(ctx, `INSERT INTO absences (kind, account, cancels, recorded_by, recorded_at) VALUES ('cancelled', ?, ?, ?, ?)`,
		account, id, recordedBy, time.Now().UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("consent registry: %w", err)
	}
	return nil
}

// Absences lists account's absences that stand (not cancelled), earliest
// first.
func (r *Registry) Absences(ctx context.Context, account string) ([]Absence, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT id, account, from_day, until_day, note, recorded_by, recorded_at FROM absences a
		WHERE account = ? AND kind = 'away' AND NOT EXISTS (SELECT 1 FROM absences c WHERE c.kind = 'cancelled' AND c.cancels = a.id)
		ORDER BY from_day, id`, account)
	if err != nil {
		return nil, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	var out []Absence
	for rows.Next() {
		var a Absence
		var at string
		if err := rows.Scan(&a.ID, &a.Account, &a.From, &a.Until, &a.Note, &a.RecordedBy, &at); err != nil {
			return nil, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
		}
		a.RecordedAt, _ = time.Parse(time.RFC3339Nano, at)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	return out, nil
}

// AbsenceDays are account's absences as closures of its schedule.
func (r *Registry) AbsenceDays(ctx context.Context, account string, loc *time.Location) (hours.Days, error) {
	as, err := r.Absences(ctx, account)
	if err != nil {
		return hours.Days{}, err
	}
	days := hours.Days{Location: loc}
	for _, a := range as {
		from, err1 := hours.ParseDate(a.From)
		until, err2 := hours.ParseDate(a.Until)
		if err1 != nil || err2 != nil {
			continue
		}
		why := "away"
		if a.Note != "" {
			why = "away: " + a.Note
		}
		days.Ranges = append(days.Ranges, hours.DayRange{From: from, Until: until, Why: why})
	}
	return days, nil
}
