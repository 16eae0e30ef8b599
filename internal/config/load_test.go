package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "config.example.toml"))
	if err != nil {
		t.Fatalf("config.example.toml: %v", err)
	}
	if !filepath.IsAbs(cfg.DataDir) || filepath.Base(cfg.DataDir) != "sealpost-data" {
		t.Errorf("data_dir = %q; want an absolute path ending in sealpost-data", cfg.DataDir)
	}
	if len(cfg.Policy.Rules) != 1 {
		t.Fatalf("the example ships %d content rules, want the SSN rule", len(cfg.Policy.Rules))
	}
	ssn := regexp.MustCompile(cfg.Policy.Rules[0].Pattern)
	if !ssn.MatchString("SSN 123-45-6789") || ssn.MatchString("call 555-123-4567") || ssn.MatchString("on 2026-11-22") {
		t.Error("the example's SSN rule matches the wrong things")
	}
	if cfg.Policy.PartialSends != "refuse" || cfg.Policy.AllowPartialSends() {
		t.Errorf("partial_sends = %q; a message with a refused recipient must go to nobody unless an admin allows it", cfg.Policy.PartialSends)
	}
	if cfg.Upstream.Lifetime.D().Hours() != 120 || cfg.Archive.Retention.D().Hours() != 7*365*24 {
		t.Errorf("durations: lifetime %v, retention %v", cfg.Upstream.Lifetime.D(), cfg.Archive.Retention.D())
	}
}

// TestContainerConfigLoads: the image's configuration is valid, serves the
// network (not loopback) and ships no password anyone knows.
func TestContainerConfigLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "deploy", "container", "sealpost.toml"))
	if err != nil {
		t.Fatalf("deploy/container/sealpost.toml: %v", err)
	}
	if cfg.DataDir != "/var/lib/sealpost" || cfg.SMTP.Submission != "0.0.0.0:587" || cfg.Metrics.Listen == "" {
		t.Errorf("data_dir %q, submission %q, metrics %q", cfg.DataDir, cfg.SMTP.Submission, cfg.Metrics.Listen)
	}
	if bcrypt.CompareHashAndPassword([]byte(cfg.Accounts[0].PasswordHash), []byte("demo-password")) == nil {
		t.Error("the container's configuration ships the demo password on a public port")
	}
}

func TestConfigErrorsNameKeyAndLine(t *testing.T) {
	tests := []struct {
		name, toml string
		want       []string // "line:key" fragments every one of which must be reported
	}{
		{"unknown key", `data_dir = "d"
[smtp]
hostname = "h"
submision = "127.0.0.1:1"
`, []string{":4: smtp.submision: unknown key"}},
		{"several problems at once", `data_dir = "d"
[smtp]
hostname = "h"
submission = "nonsense"
max_message_bytes = 10

[[account]]
username = "a"
password_hash = "plain"
addresses = ["not an address"]
upstream_username = "a@provider.example"

[upstream]
address = "smtp.example.com:587"
tls = "plaintext"
`, []string{":4: smtp.submission", ":5: smtp.max_message_bytes", ":9: account[0].password_hash", ":10: account[0].addresses",
			":15: upstream.tls", "account[0].upstream_password_file"}},
		{"node name unfit for object keys", `data_dir = "d"
[archive]
node = "Relay A/1"
`, []string{":3: archive.node"}},
		{"greeting wait too long", `data_dir = "d"
[smtp]
greeting_wait = "30s"
`, []string{":3: smtp.greeting_wait"}},
		{"no connections allowed", `data_dir = "d"
[smtp]
max_connections = 0
`, []string{":3: smtp.max_connections"}},
		{"oauth2 without [oauth2]", `data_dir = "d"
[[account]]
username = "a"
addresses = ["a@practice.example"]
upstream_auth = "oauth2"
upstream_password_file = "pw"
`, []string{":6: account[0].upstream_password_file: upstream_auth = \"oauth2\" logs in without a password", "account[0].upstream_username: upstream_auth = \"oauth2\" needs",
			"oauth2.provider: an account has upstream_auth"}},
		{"oauth2 settings", `data_dir = "d"
[[account]]
username = "a"
addresses = ["a@practice.example"]
upstream_username = "a@practice.example"
upstream_auth = "token"
[[account]]
username = "b"
addresses = ["b@practice.example"]
upstream_username = "b@practice.example"
upstream_auth = "oauth2"
[oauth2]
provider = "custom"
token_url = "http://login.example/token"
`, []string{":6: account[0].upstream_auth: must be password or oauth2", ":14: oauth2.token_url: \"http://login.example/token\": must be https://",
			"oauth2.client_id: must be set", "oauth2.token_url: provider = \"custom\" needs token_url and auth_url", "oauth2.scopes"}},
		{"oauth2 providers' own settings", `data_dir = "d"
[[account]]
username = "../a"
addresses = ["a@practice.example"]
upstream_username = "a@practice.example"
upstream_auth = "oauth2"
[upstream]
address = "127.0.0.1:25"
tls = "none"
[oauth2]
provider = "google"
client_id = "x"
tenant = "t"
`, []string{":3: account[0].username: \"../a\": an account that signs in with OAuth 2.0", ":9: upstream.tls: \"none\" sends no login",
			":13: oauth2.tenant: is for provider = \"microsoft\" only", "oauth2.client_secret_file: must name a file"}},
		{"microsoft needs the tenant", `data_dir = "d"
[[account]]
username = "a"
addresses = ["a@practice.example"]
upstream_username = "a@practice.example"
upstream_auth = "oauth2"
[oauth2]
provider = "microsoft"
client_id = "x"
`, []string{"oauth2.tenant: must be set for microsoft"}},
		{"partial sends", `data_dir = "d"
[policy]
partial_sends = "sometimes"
`, []string{":3: policy.partial_sends: must be refuse (a message with a refused recipient goes to nobody) or allow"}},
		{"syntax error", "data_dir = \"d\nx = 1\n", []string{":1:"}},
		{"wrong type", "data_dir = 5\n", []string{":1:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sealpost.toml")
			os.WriteFile(path, []byte(tt.toml), 0o600)
			_, err := Load(path)
			var ces Errors
			if !errors.As(err, &ces) {
				t.Fatalf("error %v is not Errors", err)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("missing %q in:\n%s", w, msg)
				}
			}
		})
	}
}
