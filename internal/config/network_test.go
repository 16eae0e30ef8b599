package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestTrustedNetworks: [smtp] trusted_networks takes networks and single
// addresses, masks a prefix written with host bits, and refuses what is not
// a network, or one that would trust everybody.
func TestTrustedNetworks(t *testing.T) {
	tests := []struct {
		in      string
		want    string // the prefix; "" when refused
		problem string
	}{
		{"192.168.1.0/24", "192.168.1.0/24", ""},
		{"192.168.1.77/24", "192.168.1.0/24", ""},
		{"10.0.0.7", "10.0.0.7/32", ""},
		{"fd00:1:2:3::/64", "fd00:1:2:3::/64", ""},
		{"2001:db8::1", "2001:db8::1/128", ""},
		{"::ffff:192.168.2.0/120", "192.168.2.0/24", ""},
		{"nonsense", "", `"nonsense": must be a network`},
		{"192.168.1.0/33", "", `"192.168.1.0/33"`},
		{"0.0.0.0/0", "", "would trust every address"},
		{"::/0", "", "would trust every address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sealpost.toml")
			cfgText := strings.Replace(minimalConfig(t), "[smtp]\n", "[smtp]\ntrusted_networks = [\""+tt.in+"\"]\n", 1)
			if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path)
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), ":3: smtp.trusted_networks: ") || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("LoadConfig: %v; want smtp.trusted_networks on line 3 saying %q", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.SMTP.TrustedPrefixes()
			if len(got) != 1 || got[0].String() != tt.want {
				t.Fatalf("trusted networks %v, want [%s]", got, tt.want)
			}
		})
	}
}

func minimalConfig(t *testing.T) string {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return `data_dir = "d"
[smtp]
hostname = "localhost"
[[account]]
username = "a"
password_hash = "` + string(h) + `"
addresses = ["a@practice.example"]
[policy]
internal_domains = ["practice.example"]
notice = "Notice."
`
}
