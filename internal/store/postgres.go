// Package store opens the database the consent registry and the keyring
// live in when they are shared: one PostgreSQL database that several relay
// nodes use at once ([store] postgres). SQLite files below data_dir stay
// the default and are opened by the registry and the keyring themselves.
//
// The registry's and keyring's queries are written once, in the SQL both
// engines read; this package is what differs: placeholders (rebind.go),
// booleans kept as 0 and 1 as SQLite keeps them, the connection's TLS and
// password, schema creation by one node at a time, and the copy from
// SQLite (migrate.go).
package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Postgres is [store]: where the shared database is and how to reach it.
type Postgres struct {
	// URL is a libpq connection string (postgres://host/db?sslmode=...
	// or key=value pairs), read by pgx.ParseConfig as libpq reads it. It
	// never holds the password.
	URL string
	// PasswordFile holds the role's password (its first line); empty for
	// a role that needs none (a client certificate in the URL, trust).
	PasswordFile string
	// CAFile is a private CA the server's certificate is verified against;
	// empty: the system's roots.
	CAFile string
	// User, when set, is the role instead of the URL's (an admin's
	// command run as the tables' owner).
	User string
}

// ConnectTimeout bounds a connection attempt to a server that does not
// answer, so a decision waiting for it gets its 451 instead of hanging.
const ConnectTimeout = 5 * time.Second

// ParseConfig reads the URL as libpq would, with sealpost's two rules on
// top: the password comes from PasswordFile only, and without sslmode in
// the URL the server's certificate is verified (verify-full), not
// libpq's "prefer", which would fall back to plaintext without a word.
// An unverified or plaintext mode is refused for anything but loopback.
func ParseConfig(p Postgres) (*pgx.ConnConfig, error) {
	if strings.TrimSpace(p.URL) == "" {
		return nil, errors.New("store: postgres URL is empty")
	}
	if urlHasPassword(p.URL) {
		return nil, errors.New("store: the postgres URL holds a password; put it in password_file instead")
	}
	conn := p.URL
	if !strings.Contains(conn, "sslmode") && os.Getenv("PGSSLMODE") == "" {
		conn = withParam(conn, "sslmode", "verify-full")
	}
	cfg, err := pgx.ParseConfig(conn)
	if err != nil {
		return nil, fmt.Errorf("store: postgres URL: %w", err)
	}
	if err := refuseUnverified(cfg); err != nil {
		return nil, err
	}
	if p.User != "" {
		cfg.User = p.User
	}
	if p.PasswordFile != "" {
		b, err := os.ReadFile(p.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("store: password_file: %w", err)
		}
		cfg.Password, _, _ = strings.Cut(string(b), "\n")
		cfg.Password = strings.TrimRight(cfg.Password, "\r")
	}
	if p.CAFile != "" {
		if err := useCA(cfg, p.CAFile); err != nil {
			return nil, err
		}
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > ConnectTimeout {
		cfg.ConnectTimeout = ConnectTimeout
	}
	return cfg, nil
}

func urlHasPassword(conn string) bool {
	if u, err := url.Parse(conn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if _, set := u.User.Password(); set {
			return true
		}
		return u.Query().Has("password")
	}
	for _, f := range strings.Fields(conn) {
		if strings.HasPrefix(f, "password=") {
			return true
		}
	}
	return false
}

func withParam(conn, key, value string) string {
	if u, err := url.Parse(conn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return conn + " " + key + "=" + value
}

// refuseUnverified: with disable, allow, prefer or require, pgx either
// sends in clear or takes any certificate; that is only acceptable when
// the server is on this machine.
func refuseUnverified(cfg *pgx.ConnConfig) error {
	verified := checksCertificate(cfg.TLSConfig)
	for _, fb := range cfg.Fallbacks {
		verified = verified && checksCertificate(fb.TLSConfig)
	}
	if verified || loopback(cfg.Host) {
		return nil
	}
	return fmt.Errorf("store: the postgres URL's sslmode does not verify the server %s; use sslmode=verify-full (the default when sslmode is left out), with ca_file for a private CA", cfg.Host)
}

// checksCertificate: verify-full leaves Go's verification on; verify-ca
// turns it off and checks the chain in a VerifyPeerCertificate of pgx's.
func checksCertificate(t *tls.Config) bool {
	return t != nil && (!t.InsecureSkipVerify || t.VerifyPeerCertificate != nil)
}

func loopback(host string) bool {
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true // a Unix socket, or this machine
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func useCA(cfg *pgx.ConnConfig, caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("store: ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("store: ca_file %s holds no PEM certificate", caFile)
	}
	set := func(t *tls.Config) {
		if t != nil {
			t.RootCAs = pool
		}
	}
	set(cfg.TLSConfig)
	for _, fb := range cfg.Fallbacks {
		set(fb.TLSConfig)
	}
	return nil
}

// MaxConns bounds each pool (the registry's, the keyring's) on each node.
const MaxConns = 16

// OpenPostgres opens a pool of connections to the shared database. Lost
// connections are replaced on the next use: a server restarted is used
// again without restarting sealpost.
//
// Every connection a burst of decisions opened stays open until it has
// been idle for five minutes: one closed at once would be opened again at
// the next burst, with TCP, TLS and the login, and each prepared query
// prepared again, on the decision that needed it. A connection idle for
// more than a second is pinged before it is used (pgx's stdlib), so a
// server restarted meanwhile costs a reconnect, not a 451.
func OpenPostgres(p Postgres) (*sql.DB, error) {
	cfg, err := ParseConfig(p)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector{stdlib.GetConnector(*cfg)})
	db.SetMaxOpenConns(MaxConns)
	db.SetMaxIdleConns(MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// EnsureSchema creates the tables when probe is not there yet, as one
// transaction under an advisory lock, so two nodes starting at once do
// not both create them. A role that may only read and insert (the relay's,
// deploy/README) never reaches the CREATE once an admin made the schema.
func EnsureSchema(ctx context.Context, db *sql.DB, probe, schema string) error {
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass(?) IS NOT NULL`, probe).Scan(&exists); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if exists {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7467317542314)`); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT to_regclass(?) IS NOT NULL`, probe).Scan(&exists); err != nil || exists {
		return err
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("store: create %s and its tables: %w", probe, err)
	}
	return tx.Commit()
}

// AppendOnlyFunction is the trigger function history tables share.
const AppendOnlyFunction = `
CREATE OR REPLACE FUNCTION sealpost_append_only() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
	RAISE EXCEPTION 'the consent registry is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END
$f$;
`

// AppendOnly returns the triggers that refuse UPDATE, DELETE and TRUNCATE
// on table, for every role including the table's owner.
func AppendOnly(table string) string {
	return fmt.Sprintf(`
CREATE TRIGGER %[1]s_append_only BEFORE UPDATE OR DELETE ON %[1]s FOR EACH ROW EXECUTE FUNCTION sealpost_append_only();
CREATE TRIGGER %[1]s_no_truncate BEFORE TRUNCATE ON %[1]s FOR EACH STATEMENT EXECUTE FUNCTION sealpost_append_only();
`, table)
}

// connector hands out connections that read sealpost's SQL.
type connector struct{ inner driver.Connector }

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &pgConn{conn.(*stdlib.Conn)}, nil
}

func (c connector) Driver() driver.Driver { return c.inner.Driver() }
