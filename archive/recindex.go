package archive

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // the index is SQLite without cgo, as the registry is
)

// The record index is a cache of the records' clear headers (sequence
// number, segment and offset, time, kind, direction, ids, account, keyed
// address hashes, payload length and hash, the record's own hash), kept
// in a SQLite file next to the archive folder (IndexFile): export, the
// refusal look-ups, holds and the relay's start find records through it
// instead of reading every header of every segment.
//
// The archive is the truth and the index only ever follows it: rows are
// written after the batch they describe is fsynced, never before, so a
// crash leaves the index behind the archive, never ahead. Whatever is found
// through it is read again from its segment, and its header's hash compared
// with the row's, before it is used; verify never reads it. Lost, stale
// (another archive, a restored backup) or damaged, it is built again from
// the segments: at the relay's start, by `sealpost archive reindex`, or by
// the first reader that finds it so while no relay runs.
//
// Derived state the relay's start needs lives in it too: the newest consent
// event copied and how far each IMAP folder was read (with what prune
// records carried over), so a start reads the index's head and the open
// segment's tail, not every segment.
const indexSchema = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS segments (name TEXT PRIMARY KEY, end_off INTEGER NOT NULL, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
	seq     INTEGER PRIMARY KEY,
	seg     TEXT NOT NULL,
	off     INTEGER NOT NULL,
	end_off INTEGER NOT NULL,
	kind    TEXT NOT NULL,
	time    INTEGER NOT NULL,
	dir     TEXT NOT NULL DEFAULT '',
	id      TEXT NOT NULL DEFAULT '',
	event   TEXT NOT NULL DEFAULT '',
	account TEXT NOT NULL DEFAULT '',
	code    TEXT NOT NULL DEFAULT '',
	consent INTEGER NOT NULL DEFAULT 0,
	plen    INTEGER NOT NULL,
	psha    TEXT NOT NULL DEFAULT '',
	hash    TEXT NOT NULL,
	dedup   TEXT
);
CREATE INDEX IF NOT EXISTS records_by_kind_time ON records(kind, time);
CREATE INDEX IF NOT EXISTS records_by_id ON records(id, kind);
CREATE INDEX IF NOT EXISTS records_by_dedup ON records(dedup) WHERE dedup IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_by_seg ON records(seg);
CREATE TABLE IF NOT EXISTS addrs (hash TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (hash, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ingest_at (account TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL, PRIMARY KEY (account, folder));
`

// indexFormat changes when the index's tables do: an index of another
// format is built again.
const indexFormat = "1"

// IndexFile is where the index of the archive in dir is kept: next to the
// folder, not in it (data_dir/archive-index.db for data_dir/archive), so
// that a copy of the folder is the record alone.
func IndexFile(dir string) string { return filepath.Clean(dir) + "-index.db" }

// errIndexStale says the index does not describe this archive as it is:
// it is built again.
var errIndexStale = errors.New("the archive's index does not match the archive")

// recIndex is an open index file.
type recIndex struct {
	db   *sql.DB
	path string
}

// indexHead is how far the index has read: the last record it holds, where
// it starts and ends in its segment.
type indexHead struct {
	seq      uint64
	seg      string
	off, end int64
	hash     string
}

// indexRow is one record for the index: where it is, its header and hash.
type indexRow struct {
	seg      string
	off, end int64
	h        header
	hash     string
}

func openIndex(path string) (*recIndex, error) {
	// The index is a cache: synchronous(OFF) costs it nothing the archive
	// cannot give back, and keeps its writes off the disk's flushes.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	if _, err := db.Exec(indexSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %w", errIndexStale, err)
	}
	x := &recIndex{db: db, path: path}
	format, err := x.meta(context.Background(), "format")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: %w", errIndexStale, err)
	}
	if format == "" {
		if _, err := db.Exec(`INSERT INTO meta (k, v) VALUES ('format', ?)`, indexFormat); err != nil {
			db.Close()
			return nil, err
		}
	} else if format != indexFormat {
		db.Close()
		return nil, fmt.Errorf("%w: format %s, not %s", errIndexStale, format, indexFormat)
	}
	return x, nil
}

// removeIndexFile removes an index file that cannot be used, with SQLite's
// files beside it.
func removeIndexFile(path string) error {
	var errs []error
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (x *recIndex) close() error { return x.db.Close() }

func (x *recIndex) meta(ctx context.Context, k string) (string, error) {
	var v string
	err := x.db.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = ?`, k).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// head is the index's head; seq 0 when it holds no record.
func (x *recIndex) head(ctx context.Context) (indexHead, error) {
	var h indexHead
	v, err := x.meta(ctx, "head")
	if err != nil || v == "" {
		return h, err
	}
	f := strings.Split(v, " ")
	if len(f) != 5 {
		return h, fmt.Errorf("%w: head %q", errIndexStale, v)
	}
	h.seg, h.hash = f[1], f[4]
	var e1, e2, e3 error
	h.seq, e1 = strconv.ParseUint(f[0], 10, 64)
	h.off, e2 = strconv.ParseInt(f[2], 10, 64)
	h.end, e3 = strconv.ParseInt(f[3], 10, 64)
	if err := errors.Join(e1, e2, e3); err != nil {
		return h, fmt.Errorf("%w: head %q", errIndexStale, v)
	}
	return h, nil
}

// clear empties the index, to be built again.
func (x *recIndex) clear(ctx context.Context, archiveID string) error {
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, s := range []string{`DELETE FROM records`, `DELETE FROM addrs`, `DELETE FROM segments`, `DELETE FROM ingest_at`,
		`DELETE FROM meta WHERE k <> 'format'`} {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta (k, v) VALUES ('archive', ?)`, archiveID); err != nil {
		return err
	}
	return tx.Commit()
}

// add writes rows, which follow the index's head in the chain, in one
// transaction, with the state derived from them.
func (x *recIndex) add(ctx context.Context, rows []indexRow) error {
	if len(rows) == 0 {
		return nil
	}
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rec, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO records (seq, seg, off, end_off, kind, time, dir, id, event, account, code, consent, plen, psha, hash, dedup)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer rec.Close()
	ad, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO addrs (hash, seq) VALUES (?, ?)`)
	if err != nil {
		return err
	}
	defer ad.Close()
	lastConsent, err := x.lastConsentTx(ctx, tx)
	if err != nil {
		return err
	}
	for i := range rows {
		r := &rows[i]
		h := &r.h
		var dedup any
		if h.Dedup != "" {
			dedup = h.Dedup
		}
		if _, err := rec.ExecContext(ctx, h.Seq, r.seg, r.off, r.end, h.Kind, h.Time.UnixNano(), h.Dir, h.ID, h.Event, h.Account, h.Code,
			h.Consent, h.PLen, h.PSHA, r.hash, dedup); err != nil {
			return err
		}
		for _, a := range h.Addrs {
			if _, err := ad.ExecContext(ctx, a, h.Seq); err != nil {
				return err
			}
		}
		if h.Kind == kindConsent {
			lastConsent = max(lastConsent, h.Consent)
		}
		if err := x.derive(ctx, tx, h, &lastConsent); err != nil {
			return err
		}
		if i == len(rows)-1 || rows[i+1].seg != r.seg {
			if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO segments (name, end_off, last_seq) VALUES (?, ?, ?)`, r.seg, r.end, h.Seq); err != nil {
				return err
			}
		}
	}
	last := rows[len(rows)-1]
	head := fmt.Sprintf("%d %s %d %d %s", last.h.Seq, last.seg, last.off, last.end, last.hash)
	for k, v := range map[string]string{"head": head, "last_consent": strconv.FormatInt(lastConsent, 10)} {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)`, k, v); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// derive keeps what a start must know from a record: how far each IMAP
// folder was read, and what a prune record carried over (the records it
// removed leave the index with their segments).
func (x *recIndex) derive(ctx context.Context, tx *sql.Tx, h *header, lastConsent *int64) error {
	var sources []IngestSource
	if h.Src != nil {
		sources = append(sources, *h.Src)
	}
	if h.Kind == kindPrune {
		if h.Carry != nil {
			*lastConsent = max(*lastConsent, h.Carry.Consent)
			sources = append(sources, h.Carry.Ingest...)
		}
		for _, p := range h.Pruned {
			for _, s := range []string{`DELETE FROM addrs WHERE seq IN (SELECT seq FROM records WHERE seg = ?)`, `DELETE FROM records WHERE seg = ?`, `DELETE FROM segments WHERE name = ?`} {
				if _, err := tx.ExecContext(ctx, s, p.Name); err != nil {
					return err
				}
			}
		}
	}
	for _, s := range sources {
		// advance's rule: forward under one UIDVALIDITY, a new one starts over.
		if _, err := tx.ExecContext(ctx, `INSERT INTO ingest_at (account, folder, uidvalidity, uid) VALUES (?1, ?2, ?3, ?4)
			ON CONFLICT (account, folder) DO UPDATE SET uidvalidity = ?3, uid = ?4 WHERE uidvalidity <> ?3 OR uid < ?4`,
			s.Account, s.Folder, s.UIDValidity, s.UID); err != nil {
			return err
		}
	}
	return nil
}

func (x *recIndex) lastConsentTx(ctx context.Context, tx *sql.Tx) (int64, error) {
	var v string
	err := tx.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = 'last_consent'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// derived is the start's state as the index holds it.
func (x *recIndex) derived(ctx context.Context) (lastConsent int64, ingest []IngestSource, err error) {
	v, err := x.meta(ctx, "last_consent")
	if err != nil {
		return 0, nil, err
	}
	if v != "" {
		if lastConsent, err = strconv.ParseInt(v, 10, 64); err != nil {
			return 0, nil, err
		}
	}
	rows, err := x.db.QueryContext(ctx, `SELECT account, folder, uidvalidity, uid FROM ingest_at`)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var s IngestSource
		if err := rows.Scan(&s.Account, &s.Folder, &s.UIDValidity, &s.UID); err != nil {
			return 0, nil, err
		}
		ingest = append(ingest, s)
	}
	return lastConsent, ingest, rows.Err()
}

// hasDedup says whether an inbound record with this dedup hash is indexed.
func (x *recIndex) hasDedup(ctx context.Context, dedup string) (bool, error) {
	var one int
	err := x.db.QueryRowContext(ctx, `SELECT 1 FROM records WHERE dedup = ? LIMIT 1`, dedup).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// archiveID names the archive an index belongs to: its seal key.
func archiveID(dir string) (string, error) {
	pub, err := readSealPub(dir)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(pub), nil
}
