// Package sqlstmt keeps the prepared statements of the queries asked for
// every recipient: SQLite parsed each one anew, a few percent of the
// relay's CPU for two short SELECTs.
package sqlstmt

import (
	"context"
	"database/sql"
	"sync"
)

// Cache prepares each query text once, on first use.
type Cache struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func New(db *sql.DB) *Cache { return &Cache{db: db, stmts: map[string]*sql.Stmt{}} }

func (c *Cache) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.stmts[query]; ok {
		return s, nil
	}
	s, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.stmts[query] = s
	return s, nil
}

// QueryContext is sql.DB's, through the prepared statement.
func (c *Cache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

// QueryRowScan runs a one-row query and scans it; sql.ErrNoRows as sql.DB's.
func (c *Cache) QueryRowScan(ctx context.Context, query string, args []any, dest ...any) error {
	s, err := c.stmt(ctx, query)
	if err != nil {
		return err
	}
	return s.QueryRowContext(ctx, args...).Scan(dest...)
}

// Close closes the statements (before the database).
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, s := range c.stmts {
		s.Close()
		delete(c.stmts, q)
	}
	return nil
}
