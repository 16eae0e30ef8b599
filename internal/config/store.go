package config

import (
	"github.com/sealpost/sealpost/internal/store"
)

// StoreConfig is [store]: where the consent registry, the passphrases on
// file and the keyring live. Empty: SQLite files in data_dir, for one
// server. With postgres set, one PostgreSQL database that every relay node
// of the practice shares.
type StoreConfig struct {
	// Postgres is a libpq URL (postgres://user@host:5432/db, its
	// parameters as libpq reads them); never with the password in it.
	// Without sslmode the server's certificate and name are verified.
	Postgres     string `toml:"postgres"`
	PasswordFile string `toml:"password_file"` // the role's password, on its first line
	CAFile       string `toml:"ca_file"`       // a private CA for the server's certificate
}

// Shared says whether the registry and keyring are in PostgreSQL.
func (c *Config) Shared() bool { return c.Store.Postgres != "" }

// StorePostgres is [store] as the store package takes it.
func (c *Config) StorePostgres() store.Postgres {
	return store.Postgres{URL: c.Store.Postgres, PasswordFile: c.Store.PasswordFile, CAFile: c.Store.CAFile}
}

// validateStore checks [store] the way the relay will read it, so a
// password in the URL or an unverified sslmode stops `sealpost check`.
func (c *Config) validateStore(bad reporter) {
	if c.Store.Postgres == "" {
		if c.Store.PasswordFile != "" || c.Store.CAFile != "" {
			bad("store.postgres", "is empty, so password_file and ca_file have nothing to connect to")
		}
		return
	}
	// The files are read when the store is opened (sealpost check does).
	if _, err := store.ParseConfig(store.Postgres{URL: c.Store.Postgres}); err != nil {
		bad("store.postgres", "%v", err)
	}
}
