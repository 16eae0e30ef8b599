package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConsoleConfig: [console] is off unless listen is set; a bad address,
// an admin without a usable hash and a username two logins share are named
// with their key and line.
func TestConsoleConfig(t *testing.T) {
	hash, base := accountHash(t), oneAccount(t)
	tests := []struct {
		name, toml string
		want       []string // fragments of the problems; none: it loads
	}{
		{"off by default", "", nil},
		{"on, with an admin", `[console]
listen = "127.0.0.1:8443"
require_totp_for_admins = true
[[console.admin]]
username = "office"
password_hash = "` + string(hash) + `"
`, nil},
		{"no port", `[console]
listen = "127.0.0.1"
`, []string{":9: console.listen: must be host:port"}},
		{"an admin without a hash", `[console]
listen = "127.0.0.1:8443"
[[console.admin]]
username = "office"
password_hash = "secret"
`, []string{":12: console.admin[0].password_hash: is not a bcrypt hash"}},
		{"an admin named like an account", `[console]
listen = "127.0.0.1:8443"
[[console.admin]]
username = "anna"
password_hash = "` + string(hash) + `"
`, []string{":11: console.admin[0].username: \"anna\" is also an [[account]]"}},
		{"a viewer named like an account, console on", `[archive]
[[archive.viewer]]
username = "anna"
password_hash = "` + string(hash) + `"
[console]
listen = "127.0.0.1:8443"
`, []string{":10: archive.viewer[0].username: \"anna\" is also an [[account]]"}},
		{"a viewer named like an account, console off", `[archive]
[[archive.viewer]]
username = "anna"
password_hash = "` + string(hash) + `"
`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sealpost.toml")
			os.WriteFile(path, []byte(base+tt.toml), 0o600)
			cfg, err := Load(path)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(tt.toml, "listen") != (cfg.Console.Listen != "") {
					t.Errorf("console.listen = %q", cfg.Console.Listen)
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
		})
	}
}
