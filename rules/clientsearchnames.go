package rules

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The names' trigram index: an FTS5 table over consent_events.client, kept
// by a trigger on insert (the events are append-only, so nothing else
// changes them). A search by name or chart id is a substring search,
// which no B-tree index serves: without it, a search that matches few of
// 100,000 clients walks every address and reads its event.
const (
	nameIndexTable   = `CREATE VIRTUAL TABLE IF NOT EXISTS client_names USING fts5(client, content='consent_events', content_rowid='id', tokenize='trigram')`
	nameIndexTrigger = `CREATE TRIGGER IF NOT EXISTS client_names_on_insert AFTER INSERT ON consent_events
	BEGIN INSERT INTO client_names (rowid, client) VALUES (new.id, new.client); END`
)

// nameCandidates bounds the events a search takes from the names' index.
// A text that names more matches densely: walking the addresses in order
// fills a page sooner than sorting every match.
const nameCandidates = 500

// namedEvents are the ids of the events whose client name or chart id
// contains text (like is its LIKE pattern, escaped), from the names'
// index; found is false when the index cannot answer (PostgreSQL, a text
// of fewer than three characters or with LIKE's wildcards, dense matches,
// no FTS5) and the caller reads the names instead.
func (r *Registry) namedEvents(ctx context.Context, text, like string) (ids []any, found bool, err error) {
	if r.postgres || utf8.RuneCountInString(text) < 3 || strings.ContainsAny(text, `%_\`) {
		return nil, false, nil
	}
	if !r.nameIndexReady(ctx) {
		return nil, false, ctx.Err()
	}
	// The trigram index folds more than SQLite's lower() (which folds
	// ASCII only): its candidates are checked as the names are read.
	rows, err := r.db.QueryContext(ctx, `SELECT e.id FROM client_names n JOIN consent_events e ON e.id = n.rowid
		WHERE n.client LIKE ? AND lower(e.client) LIKE ? ESCAPE '\' LIMIT ?`, "%"+text+"%", like, nameCandidates+1)
	if err != nil {
		return nil, false, fmt.Errorf("consent registry: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, false, fmt.Errorf("consent registry: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("consent registry: %w", err)
	}
	return ids, len(ids) <= nameCandidates, nil
}

// nameIndexReady makes the names' index when the file lacks it or its
// trigger (a migration that rebuilt consent_events drops the trigger with
// the old table), reading every name once; false when it cannot be made.
func (r *Registry) nameIndexReady(ctx context.Context) bool {
	if ok, err := r.hasNameIndex(ctx, r.db); err == nil && ok {
		return true
	}
	conn, err := r.db.Conn(ctx)
	if err != nil {
		return false
	}
	defer conn.Close()
	// BEGIN IMMEDIATE: the CLI and the relay may both find it missing; the
	// second waits, then finds it made.
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return false
	}
	if err := makeNameIndex(ctx, r, conn); err != nil {
		conn.ExecContext(context.Background(), `ROLLBACK`)
		return false
	}
	_, err = conn.ExecContext(ctx, `COMMIT`)
	return err == nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (r *Registry) hasNameIndex(ctx context.Context, q queryer) (bool, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE (type = 'table' AND name = 'client_names')
		OR (type = 'trigger' AND name = 'client_names_on_insert')`).Scan(&n)
	return n == 2, err
}

func makeNameIndex(ctx context.Context, r *Registry, conn *sql.Conn) error {
	if ok, err := r.hasNameIndex(ctx, conn); err != nil || ok {
		return err
	}
	for _, s := range []string{nameIndexTable, nameIndexTrigger, `INSERT INTO client_names (client_names) VALUES ('rebuild')`} {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return nil
}
