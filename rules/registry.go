package rules

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the registry is SQLite without cgo

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/internal/sqlstmt"
	"github.com/sealpost/sealpost/record"
)

// Registry is the consent registry: who consented in writing to
// unencrypted email, on what evidence, and who revoked it; and whose
// passphrase for sealed PDFs is on file (passphrase.go). It is a history
// of events; nothing is ever updated in place or deleted (the database
// refuses it), because the history is part of the clinical record. Only
// the current passphrases themselves, encrypted, are kept apart and
// replaced or deleted.
//
// The CLI and the running relay open the same file: every lookup reads the
// database, so a revocation counts from the very next recipient.
type Registry struct {
	db   *sql.DB
	q    *sqlstmt.Cache // the per-recipient query, prepared
	path string         // registry.db, or where it would be: the passphrase key file is beside it
	keys passphraseKey
	// postgres: the registry is in the shared database ([store]).
	postgres bool
	codes    loginCodes
}

const dateLayout = "2006-01-02"

// OpenRegistry opens (creating if needed) the registry at path.
func OpenRegistry(path string) (*Registry, error) {
	// SQLite would make it world-readable; its -wal and -shm copy its mode.
	if err := fsutil.CreatePrivate(path); err != nil {
		return nil, fmt.Errorf("consent registry %s: %w", path, err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("consent registry %s: %w", path, err)
	}
	if err := migrate(context.Background(), db); err != nil {
		db.Close()
		return nil, fmt.Errorf("consent registry %s: %w", path, err)
	}
	if _, err := db.Exec(schema + totpSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("consent registry %s: %w", path, err)
	}
	if err := openHoursTables(context.Background(), db); err != nil {
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
	// Passphrase is the passphrase-set event of the passphrase on file
	// for sealed PDFs, nil when none is.
	Passphrase *record.ConsentEvent
	// PassphraseRemoved is the last passphrase-removed event when no
	// passphrase is on file any more.
	PassphraseRemoved *record.ConsentEvent
	// ProfessionalState is the address's standing as a professional
	// recipient (another clinician, a business associate), on its own or
	// through its domain; ConsentNone when it is not one. Professional is
	// the professional-given event it rests on (Active, Expired) or the
	// professional-revoked one (Revoked).
	ProfessionalState ConsentState
	Professional      *record.ConsentEvent
}

// Current returns the address's consent standing at now, and its
// passphrase for sealed PDFs. An error means the registry could not be
// read; it wraps ErrUnavailable.
func (r *Registry) Current(ctx context.Context, address string, now time.Time) (ConsentStatus, error) {
	n, err := addr.Normalize(address)
	if err != nil {
		return ConsentStatus{}, err
	}
	st := ConsentStatus{Address: n, State: ConsentNone, ProfessionalState: ConsentNone}
	consents, err := r.standingEvents(ctx, &st, now)
	if err != nil {
		return st, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	st.setConsent(consents, now)
	return st, nil
}

// currentQuery is everything Current reads about an address (?1), in one
// statement so that a decision costs one round trip to a shared database:
// the newest professional event of the address or else of its domain (?2,
// "@domain"), the newest two consent events (a revocation and the consent
// it ended) and the newest passphrase event. Each row names its part;
// UNION ALL promises no order across parts, so Current sorts what needs it.
const currentQuery = `SELECT 'professional' AS part, p.* FROM (SELECT ` + eventColumns + `, a.address
		FROM professional_addresses a JOIN consent_events e ON e.id = a.event_id
		WHERE a.address IN (?1, ?2) ORDER BY a.address = ?1 DESC, e.id DESC LIMIT 1) p
	UNION ALL SELECT 'consent', c.* FROM (SELECT ` + eventColumns + `, a.address
		FROM consent_addresses a JOIN consent_events e ON e.id = a.event_id
		WHERE a.address = ?1 ORDER BY e.id DESC LIMIT 2) c
	UNION ALL SELECT 'passphrase', s.* FROM (SELECT ` + eventColumns + `, a.address
		FROM passphrase_addresses a JOIN consent_events e ON e.id = a.event_id
		WHERE a.address = ?1 ORDER BY e.id DESC LIMIT 1) s`

// standingRow scans one row of currentQuery: its part, the event's
// columns, the address the event was found under.
type standingRow struct {
	rows          *sql.Rows
	part, address string
}

func (w *standingRow) Scan(dest ...any) error {
	return w.rows.Scan(append(append([]any{&w.part}, dest...), &w.address)...)
}

// standingEvents runs currentQuery for st.Address, fills in the
// professional standing and the passphrase, and returns the consent
// events, newest first.
func (r *Registry) standingEvents(ctx context.Context, st *ConsentStatus, now time.Time) ([]*record.ConsentEvent, error) {
	rows, err := r.q.QueryContext(ctx, currentQuery, st.Address, "@"+addr.DomainOf(st.Address))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var consents []*record.ConsentEvent
	for rows.Next() {
		row := &standingRow{rows: rows}
		ev, err := scanEvent(row)
		if err != nil {
			return nil, err
		}
		switch row.part {
		case "professional":
			st.setProfessional(ev, row.address, now)
		case "consent":
			ev.Addresses = []string{st.Address}
			consents = append(consents, ev)
		case "passphrase":
			ev.Addresses = []string{st.Address}
			if ev.Kind == record.PassphraseSet {
				st.Passphrase = ev
			} else {
				st.PassphraseRemoved = ev
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(consents, func(a, b *record.ConsentEvent) int { return cmp.Compare(b.ID, a.ID) })
	return consents, nil
}

// setConsent sets st's consent standing from the address's newest consent
// events, newest first.
func (st *ConsentStatus) setConsent(evs []*record.ConsentEvent, now time.Time) {
	if len(evs) == 0 {
		return
	}
	last := evs[0]
	if last.Kind == record.ConsentRevoked {
		st.State, st.Revoked = ConsentRevoked, last
		if len(evs) > 1 && evs[1].Kind == record.ConsentGiven {
			st.Given = evs[1]
		}
		return
	}
	st.Given = last
	if expired(last.Expires, now) {
		st.State = ConsentExpired
	} else {
		st.State = ConsentActive
	}
}

// setProfessional sets st's professional standing from the newest
// professional event found under target (the address, or "@domain").
func (st *ConsentStatus) setProfessional(ev *record.ConsentEvent, target string, now time.Time) {
	setTarget(ev, target)
	st.Professional = ev
	switch {
	case ev.Kind == record.ProfessionalRevoked:
		st.ProfessionalState = ConsentRevoked
	case expired(ev.Expires, now):
		st.ProfessionalState = ConsentExpired
	default:
		st.ProfessionalState = ConsentActive
	}
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
	if err := s.Scan(&ev.ID, &ev.Kind, &ev.Client, &ev.Signed, &ev.Evidence, &ev.Expires, &ev.Reason, &ev.Prefer, &ev.NoHold, &ev.RecordedBy, &at); err != nil {
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
	return append(problems, checkTerms(ev, now)...)
}

// checkTerms validates what a consent and a professional agreement both
// need: evidence, the date it was signed, a sound expiry, who records it.
func checkTerms(ev *record.ConsentEvent, now time.Time) []string {
	var problems []string
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
	if ev.Prefer != "" && ev.Prefer != record.PreferClear {
		problems = append(problems, fmt.Sprintf("prefer %q: the only preference is %q (unencrypted email although a passphrase is on file)", ev.Prefer, record.PreferClear))
	}
	if strings.TrimSpace(ev.RecordedBy) == "" {
		problems = append(problems, "who recorded the consent is not known")
	}
	return problems
}

// Add records a consent. It returns the event as stored (with its id).
func (r *Registry) Add(ctx context.Context, ev record.ConsentEvent) (record.ConsentEvent, error) {
	now := time.Now()
	ev.Kind = record.ConsentGiven
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
	ev := record.ConsentEvent{Kind: record.ConsentRevoked, Client: st.Given.Client, Addresses: []string{st.Address}, Reason: reason, RecordedBy: recordedBy}
	err = r.inTx(ctx, func(tx *sql.Tx) error { return insertEvent(ctx, tx, &ev, now) })
	return ev, err
}

// insertEvent appends ev to the history, its addresses in the table of
// its kind's (registryschema.go).
func insertEvent(ctx context.Context, tx *sql.Tx, ev *record.ConsentEvent, now time.Time) error {
	ev.RecordedAt = now.UTC()
	err := tx.QueryRowContext(ctx, `INSERT INTO consent_events (kind, client, signed, evidence, expires, reason, prefer, no_hold, recorded_by, recorded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, ev.Kind, ev.Client, ev.Signed, ev.Evidence, ev.Expires, ev.Reason, ev.Prefer, ev.NoHold, ev.RecordedBy,
		ev.RecordedAt.Format(time.RFC3339Nano)).Scan(&ev.ID)
	if err != nil {
		return err
	}
	insert := `INSERT INTO consent_addresses (event_id, address) VALUES (?, ?)`
	addrs := ev.Addresses
	switch ev.Kind {
	case record.PassphraseSet, record.PassphraseRemoved:
		insert = `INSERT INTO passphrase_addresses (event_id, address) VALUES (?, ?)`
	case record.ProfessionalGiven, record.ProfessionalRevoked:
		insert = `INSERT INTO professional_addresses (event_id, address) VALUES (?, ?)`
		if ev.Domain != "" {
			addrs = []string{"@" + ev.Domain}
		}
	}
	for _, a := range addrs {
		if _, err := tx.ExecContext(ctx, insert, ev.ID, a); err != nil {
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

// ConsentEntry is one address's line in `sealpost consent list`.
type ConsentEntry struct {
	Address    string       `json:"address"`
	Client     string       `json:"client,omitempty"`
	State      ConsentState `json:"state"`
	Signed     string       `json:"signed,omitempty"`
	Evidence   string       `json:"evidence,omitempty"`
	Expires    string       `json:"expires,omitempty"`
	Prefer     string       `json:"prefer,omitempty"`  // "clear": unencrypted email although a passphrase is on file
	NoHold     bool         `json:"no_hold,omitempty"` // mail to the client is never held for office hours
	RecordedBy string       `json:"recorded_by"`
	RecordedAt time.Time    `json:"recorded_at"`
	Revoked    *time.Time   `json:"revoked,omitempty"`
	Reason     string       `json:"revocation_reason,omitempty"`
	// PassphraseSet is when the passphrase on file for sealed PDFs was
	// set; zero when there is none.
	PassphraseSet time.Time `json:"passphrase_set,omitzero"`
}

// listEntry is an address's standing as List shows it.
func listEntry(st ConsentStatus) ConsentEntry {
	e := ConsentEntry{Address: st.Address, State: st.State}
	if g := st.Given; g != nil {
		e.Client, e.Signed, e.Evidence, e.Expires, e.Prefer, e.RecordedBy, e.RecordedAt = g.Client, g.Signed, g.Evidence, g.Expires, g.Prefer, g.RecordedBy, g.RecordedAt
		e.NoHold = g.NoHold
	}
	if rv := st.Revoked; rv != nil {
		t := rv.RecordedAt
		e.Revoked, e.Reason = &t, rv.Reason
		if e.Client == "" {
			e.Client = rv.Client
		}
	}
	if p := st.Passphrase; p != nil {
		e.PassphraseSet = p.RecordedAt
		if e.Client == "" {
			e.Client = p.Client
		}
		if e.RecordedBy == "" {
			e.RecordedBy, e.RecordedAt = p.RecordedBy, p.RecordedAt
		}
	}
	return e
}

// EventsSince returns the history after event id, oldest first: the archive
// copies it into the record.
func (r *Registry) EventsSince(ctx context.Context, id int64) ([]record.ConsentEvent, error) {
	return r.EventsAfter(ctx, id, -1)
}

// addressTable is the table an event of this kind names its addresses in.
func addressTable(kind string) string {
	switch kind {
	case record.PassphraseSet, record.PassphraseRemoved:
		return "passphrase_addresses"
	case record.ProfessionalGiven, record.ProfessionalRevoked:
		return "professional_addresses"
	}
	return "consent_addresses"
}

// EventsAfter returns at most limit events of the history after event id
// (limit < 0: all), oldest first, with their addresses: the archive copies
// them in batches, and a registry of 100,000 clients is never in memory
// at once. The addresses come in one query per table for the whole
// batch, by event id (indexed).
func (r *Registry) EventsAfter(ctx context.Context, id int64, limit int) ([]record.ConsentEvent, error) {
	if limit < 0 {
		limit = math.MaxInt32 // PostgreSQL refuses SQLite's LIMIT -1
	}
	rows, err := r.db.QueryContext(ctx, `SELECT `+eventColumns+` FROM consent_events e WHERE e.id > ? ORDER BY e.id LIMIT ?`, id, limit)
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
	if len(out) == 0 {
		return nil, nil
	}
	byID := make(map[int64]*record.ConsentEvent, len(out))
	for i := range out {
		byID[out[i].ID] = &out[i]
	}
	for _, t := range []string{"consent_addresses", "passphrase_addresses", "professional_addresses"} {
		if err := r.addEventAddresses(ctx, t, id, out[len(out)-1].ID, byID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// addEventAddresses adds the addresses table names for events after id up
// to last to the events whose kind names its addresses there, in the order
// they were recorded.
func (r *Registry) addEventAddresses(ctx context.Context, table string, id, last int64, byID map[int64]*record.ConsentEvent) error {
	rows, err := r.db.QueryContext(ctx, `SELECT event_id, address FROM `+table+` WHERE event_id > ? AND event_id <= ? ORDER BY event_id, rowid`, id, last)
	if err != nil {
		return fmt.Errorf("consent registry: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var eid int64
		var a string
		if err := rows.Scan(&eid, &a); err != nil {
			return err
		}
		ev := byID[eid]
		if ev == nil || addressTable(ev.Kind) != table {
			continue
		}
		if d, ok := strings.CutPrefix(a, "@"); ok {
			ev.Domain = d
			continue
		}
		ev.Addresses = append(ev.Addresses, a)
	}
	return rows.Err()
}

// ClientAddresses returns every address ever recorded for a client name or
// chart id (exports by client use it).
func (r *Registry) ClientAddresses(ctx context.Context, client string) ([]string, error) {
	return r.addresses(ctx, `SELECT a.address FROM consent_addresses a JOIN consent_events e ON e.id = a.event_id WHERE e.client = ?1
		UNION SELECT a.address FROM passphrase_addresses a JOIN consent_events e ON e.id = a.event_id WHERE e.client = ?1
		ORDER BY 1`, client)
}
