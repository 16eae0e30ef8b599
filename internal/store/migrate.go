package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // the files copied from
)

// Table is one table `sealpost store migrate` copies.
type Table struct {
	Name    string
	Columns string // as the SELECT and the INSERT name them
	// OrderBy orders the rows the same on both engines: the copy keeps
	// the order rows were written in, the hash reads them in it.
	OrderBy string
	// Identity is the column PostgreSQL numbers new rows by; after the
	// copy it goes on after the highest id copied.
	Identity string
}

// Sum is a table's rows counted and hashed, on one engine.
type Sum struct {
	Table  string
	Rows   int64
	SHA256 string
}

// ErrNotEmpty: the database copied into already holds rows.
var ErrNotEmpty = errors.New("the PostgreSQL database already holds a registry or keyring")

// OpenSQLiteReadOnly opens a registry or keyring file only to read it.
func OpenSQLiteReadOnly(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return db, nil
}

// Copy copies tables from the SQLite database src into the PostgreSQL
// database dst in one transaction, refusing when dst holds any of their
// rows already. It then counts and hashes every table on both and returns
// the sums; an error when any differs.
func Copy(ctx context.Context, src, dst *sql.DB, tables []Table) ([]Sum, error) {
	if err := Empty(ctx, dst, tables); err != nil {
		return nil, err
	}
	tx, err := dst.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer tx.Rollback()
	for _, t := range tables {
		if err := copyTable(ctx, src, tx, t); err != nil {
			return nil, fmt.Errorf("store: copy %s: %w", t.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var sums []Sum
	for _, t := range tables {
		from, err := SumTable(ctx, src, t)
		if err != nil {
			return nil, err
		}
		to, err := SumTable(ctx, dst, t)
		if err != nil {
			return nil, err
		}
		if from != to {
			return nil, fmt.Errorf("store: %s differs after the copy: %d rows (SHA-256 %s) in SQLite, %d (%s) in PostgreSQL", t.Name, from.Rows, from.SHA256, to.Rows, to.SHA256)
		}
		sums = append(sums, from)
	}
	return sums, nil
}

// Empty returns ErrNotEmpty when any of the tables holds a row.
func Empty(ctx context.Context, db *sql.DB, tables []Table) error {
	for _, t := range tables {
		var any bool
		if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM `+t.Name+`)`).Scan(&any); err != nil {
			return fmt.Errorf("store: %s: %w", t.Name, err)
		}
		if any {
			return fmt.Errorf("store: %w (%s has rows); migrate copies into an empty database only", ErrNotEmpty, t.Name)
		}
	}
	return nil
}

func copyTable(ctx context.Context, src *sql.DB, tx *sql.Tx, t Table) error {
	n := len(strings.Split(t.Columns, ","))
	ins, err := tx.PrepareContext(ctx, `INSERT INTO `+t.Name+` (`+t.Columns+`) VALUES (?`+strings.Repeat(", ?", n-1)+`)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	rows, err := src.QueryContext(ctx, `SELECT `+t.Columns+` FROM `+t.Name+` ORDER BY `+t.OrderBy)
	if err != nil {
		return err
	}
	defer rows.Close()
	vals := make([]any, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		if _, err := ins.ExecContext(ctx, vals...); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if t.Identity == "" {
		return nil
	}
	_, err = tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence(?, ?), m) FROM (SELECT max(`+t.Identity+`) AS m FROM `+t.Name+`) AS top WHERE m IS NOT NULL`, t.Name, t.Identity)
	return err
}

// SumTable counts table's rows and hashes them in OrderBy order, each
// value with its kind and length, so that the same rows give the same sum
// on SQLite and PostgreSQL.
func SumTable(ctx context.Context, db *sql.DB, t Table) (Sum, error) {
	n := len(strings.Split(t.Columns, ","))
	rows, err := db.QueryContext(ctx, `SELECT `+t.Columns+` FROM `+t.Name+` ORDER BY `+t.OrderBy)
	if err != nil {
		return Sum{}, fmt.Errorf("store: %s: %w", t.Name, err)
	}
	defer rows.Close()
	h := sha256.New()
	s := Sum{Table: t.Name}
	vals := make([]any, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return Sum{}, fmt.Errorf("store: %s: %w", t.Name, err)
		}
		for _, v := range vals {
			if err := hashValue(h, v); err != nil {
				return Sum{}, fmt.Errorf("store: %s: %w", t.Name, err)
			}
		}
		s.Rows++
	}
	if err := rows.Err(); err != nil {
		return Sum{}, fmt.Errorf("store: %s: %w", t.Name, err)
	}
	s.SHA256 = hex.EncodeToString(h.Sum(nil))
	return s, nil
}

// hashValue writes one value: text and bytes alike (SQLite may keep text
// in a BLOB), integers in decimal, each prefixed by its kind and length.
func hashValue(h hash.Hash, v any) error {
	var kind byte
	var b []byte
	switch x := v.(type) {
	case nil:
		kind = 'n'
	case int64:
		kind, b = 'i', strconv.AppendInt(nil, x, 10)
	case string:
		kind, b = 's', []byte(x)
	case []byte:
		kind, b = 's', x
	default:
		return fmt.Errorf("a value of type %T", v)
	}
	h.Write([]byte{kind})
	h.Write(strconv.AppendInt(nil, int64(len(b)), 10))
	h.Write([]byte{':'})
	h.Write(b)
	return nil
}
