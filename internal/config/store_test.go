package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// accountHash is a bcrypt hash of "pw", for the logins a test's
// configuration needs.
func accountHash(t *testing.T) []byte {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return hash
}

// oneAccount is the shortest configuration that loads, seven lines long
// (the tests' expected line numbers count them): one account, a notice.
func oneAccount(t *testing.T) string {
	return `data_dir = "d"
[[account]]
username = "anna"
password_hash = "` + string(accountHash(t)) + `"
addresses = ["anna@practice.example"]
[policy]
notice = "Confidential."
`
}

// TestStoreConfig: without [store] the registry stays in SQLite; a
// PostgreSQL URL with its password in it, or one that would not verify the
// server, is named with its key and line; password_file is taken relative
// to the configuration.
func TestStoreConfig(t *testing.T) {
	base := oneAccount(t)
	tests := []struct {
		name, toml string
		want       []string
		shared     bool
	}{
		{"SQLite by default", "", nil, false},
		{"PostgreSQL", `[store]
postgres = "postgres://sealpost@db.practice.example/sealpost"
password_file = "pg-password"
`, nil, true},
		{"a password in the URL", `[store]
postgres = "postgres://sealpost:hunter2@db.practice.example/sealpost"
`, []string{":9: store.postgres: ", "password_file"}, false},
		{"an unverified server", `[store]
postgres = "postgres://sealpost@db.practice.example/sealpost?sslmode=require"
`, []string{":9: store.postgres: ", "verify-full"}, false},
		{"a password file without a server", `[store]
password_file = "pg-password"
`, []string{"store.postgres: is empty"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "pg-password"), []byte("s3cret\n"), 0o600)
			path := filepath.Join(dir, "sealpost.toml")
			os.WriteFile(path, []byte(base+tt.toml), 0o600)
			cfg, err := Load(path)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Shared() != tt.shared {
					t.Fatalf("Shared() = %v", cfg.Shared())
				}
				if tt.shared && cfg.StorePostgres().PasswordFile != filepath.Join(dir, "pg-password") {
					t.Errorf("password_file %q", cfg.StorePostgres().PasswordFile)
				}
				return
			}
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}
