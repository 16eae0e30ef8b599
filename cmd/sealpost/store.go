package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/store"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/pgp"
)

func init() {
	register(&command{name: "store init", args: "[--as ROLE --password-file FILE] [--grant ROLE]",
		summary: "create the registry's and keyring's tables in [store] postgres (as their owner), and give the relay's role what it may do", run: runStoreInit})
	register(&command{name: "store grants", args: "ROLE",
		summary: "print the SQL that gives the relay's role INSERT and SELECT on the history and what it changes elsewhere", run: runStoreGrants})
	register(&command{name: "store migrate", args: "--from sqlite",
		summary: "copy the SQLite registry and keyring of data_dir into an empty [store] postgres, then compare counts and hashes", run: runStoreMigrate})
}

// openRegistryStore opens the registry where [store] says it is.
func openRegistryStore(cfg *config.Config) (*rules.Registry, error) {
	if !cfg.Shared() {
		return rules.OpenRegistry(cfg.RegistryPath())
	}
	db, err := store.OpenPostgres(cfg.StorePostgres())
	if err != nil {
		return nil, err
	}
	reg, err := rules.OpenRegistryPostgres(db, cfg.DataDir)
	if err != nil {
		db.Close()
	}
	return reg, err
}

// openKeyring opens the keyring where [store] says it is.
func openKeyring(cfg *config.Config, opts pgp.KeyringOptions) (*pgp.Keyring, error) {
	if !cfg.Shared() {
		return pgp.OpenKeyring(cfg.KeyringPath(), opts)
	}
	db, err := store.OpenPostgres(cfg.StorePostgres())
	if err != nil {
		return nil, err
	}
	k, err := pgp.OpenKeyringPostgres(db, opts)
	if err != nil {
		db.Close()
	}
	return k, err
}

// storeWhere names where the registry or keyring is for check's lines:
// its SQLite file, or the PostgreSQL server and database (never the
// password, which is never in the URL).
func storeWhere(cfg *config.Config, sqlitePath string) string {
	if !cfg.Shared() {
		return sqlitePath
	}
	pc, err := store.ParseConfig(store.Postgres{URL: cfg.Store.Postgres})
	if err != nil {
		return "in PostgreSQL"
	}
	return fmt.Sprintf("in PostgreSQL %s:%d/%s", pc.Host, pc.Port, pc.Database)
}

// registryHoldsRecorded refuses a registry that lacks events the archive
// already recorded from it: one set in [store] without store migrate, or a
// registry.db restored from an older copy. Its ids would start again below
// the archive's and the new events, revocations among them, would never
// be copied into the record; and the events it lost may be revocations.
func registryHoldsRecorded(ctx context.Context, reg *rules.Registry, recorded int64, cfg *config.Config) error {
	last, err := reg.LastEventID(ctx)
	if err != nil || last >= recorded {
		return err
	}
	hint := "was registry.db restored from a copy older than the archive?"
	if cfg.Shared() {
		hint = "was [store] postgres set without sealpost store migrate --from sqlite?"
	}
	return fmt.Errorf("the consent registry %s ends at event %d, but the archive recorded its events up to %d: it is not the registry this archive recorded (%s)",
		storeWhere(cfg, cfg.RegistryPath()), last, recorded, hint)
}

var roleName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// grantsSQL gives role what the relay and the admin commands do: add to
// the history and read it, replace the state beside it.
func grantsSQL(role string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GRANT SELECT, INSERT ON %s TO %s;\n", strings.Join(rules.RegistryHistoryTables, ", "), role)
	fmt.Fprintf(&b, "GRANT SELECT, INSERT, UPDATE, DELETE ON %s, %s TO %s;\n", strings.Join(rules.RegistryStateTables, ", "),
		strings.Join(pgp.KeyringTables, ", "), role)
	return b.String()
}

func runStoreGrants(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags(), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || !roleName.MatchString(pos[0]) {
		return usagef("needs one ROLE, the relay's PostgreSQL role (lower case letters, digits, _)")
	}
	fmt.Fprint(c.stdout, grantsSQL(pos[0]))
	return nil
}

func runStoreInit(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	as := fs.String("as", "", "the PostgreSQL role that owns the tables (default: the URL's)")
	pwFile := fs.String("password-file", "", "that role's password (default: [store] password_file)")
	grant := fs.String("grant", "", "the relay's role, granted what grants prints")
	_, cfg, err := c.start(fs, args, noArgs, func() error {
		if *grant != "" && !roleName.MatchString(*grant) {
			return usagef("--grant %q is not a role name (lower case letters, digits, _)", *grant)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !cfg.Shared() {
		return errors.New("[store] postgres is not set: the registry and keyring are SQLite files in data_dir")
	}
	p := cfg.StorePostgres()
	if *as != "" {
		p.User, p.PasswordFile = *as, *pwFile
	}
	db, err := store.OpenPostgres(p)
	if err != nil {
		return err
	}
	defer db.Close()
	reg, err := rules.OpenRegistryPostgres(db, cfg.DataDir)
	if err != nil {
		return err
	}
	if err := reg.EnsureLoginCodes(ctx); err != nil {
		return err
	}
	if _, err := pgp.OpenKeyringPostgres(db, pgp.KeyringOptions{}); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "The registry's and keyring's tables are in place.")
	if *grant != "" {
		if _, err := db.ExecContext(ctx, grantsSQL(*grant)); err != nil {
			return fmt.Errorf("grant to %s: %w", *grant, err)
		}
		fmt.Fprintf(c.stdout, "%s may read and add to the history, and change the passphrases, acknowledgements and keys.\n", *grant)
	}
	return nil
}

func runStoreMigrate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	from := fs.String("from", "", "what to copy from: sqlite (the registry and keyring in data_dir)")
	_, cfg, err := c.start(fs, args, noArgs, func() error {
		if *from != "sqlite" {
			return usagef("needs --from sqlite")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !cfg.Shared() {
		return errors.New("[store] postgres is not set: say which PostgreSQL database to copy into")
	}
	db, err := store.OpenPostgres(cfg.StorePostgres())
	if err != nil {
		return err
	}
	defer db.Close()
	reg, err := rules.OpenRegistryPostgres(db, cfg.DataDir)
	if err != nil {
		return err
	}
	if err := reg.EnsureLoginCodes(ctx); err != nil {
		return err
	}
	keys, err := pgp.OpenKeyringPostgres(db, pgp.KeyringOptions{})
	if err != nil {
		return err
	}
	if err := store.Empty(ctx, db, append(append([]store.Table(nil), rules.RegistryCopy...), pgp.KeyringCopy...)); err != nil {
		return err
	}
	for _, part := range []struct {
		what, path string
		tables     []store.Table
	}{
		{"consent registry", cfg.RegistryPath(), rules.RegistryCopy},
		{"keyring", cfg.KeyringPath(), pgp.KeyringCopy},
	} {
		sums, err := migrateFile(ctx, db, part.path, part.tables)
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(c.stdout, "No %s at %s: nothing to copy.\n", part.what, part.path)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", part.what, part.path, err)
		}
		fmt.Fprintf(c.stdout, "%s %s, copied and compared:\n", part.what, part.path)
		for _, s := range sums {
			fmt.Fprintf(c.stdout, "  %-24s %8d rows  SHA-256 %s\n", s.Table, s.Rows, s.SHA256)
		}
	}
	if err := keys.Touch(ctx); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "The SQLite files are as they were. Copy %s to every node's data_dir: the passphrases in PostgreSQL are encrypted with it.\n",
		rules.PassphraseKeyFile)
	return nil
}

func migrateFile(ctx context.Context, dst *sql.DB, path string, tables []store.Table) ([]store.Sum, error) {
	src, err := store.OpenSQLiteReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	sums, err := store.Copy(ctx, src, dst, tables)
	if err != nil && (strings.Contains(err.Error(), "no such column") || strings.Contains(err.Error(), "no such table")) {
		// migrate only reads; the registry's own upgrade writes.
		return nil, fmt.Errorf("%w; the file is from an older sealpost: without [store], run sealpost check (or start this version) once to bring it up to date, then migrate", err)
	}
	return sums, err
}
