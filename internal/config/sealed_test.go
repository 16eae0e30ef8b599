package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadString(t *testing.T, toml string) (*Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sealpost.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

// TestSealedDefaults: without a [sealed] section every key has a value a
// client can read, from the rest of the configuration.
func TestSealedDefaults(t *testing.T) {
	cfg, err := loadString(t, minimalConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sealed
	if s.PracticeName != "practice.example" || s.Subject != "Secure message from practice.example" || s.MaxBytes != cfg.SMTP.MaxMessageBytes ||
		!strings.Contains(s.Text, "passphrase you agreed with us at intake") || !strings.Contains(s.Text, "from practice.example") ||
		!strings.Contains(s.Crisis, "988") || !strings.Contains(s.Crisis, "741741") || !strings.Contains(s.Crisis, "911") {
		t.Fatalf("defaults %+v", s)
	}
	noDomains := strings.Replace(minimalConfig(t), `internal_domains = ["practice.example"]`, "", 1)
	noDomains = strings.Replace(noDomains, `addresses = ["a@practice.example"]`, `addresses = ["Maria <a@Therapy.example>"]`, 1)
	if cfg, err := loadString(t, noDomains); err != nil || cfg.Sealed.PracticeName != "therapy.example" {
		t.Fatalf("without internal domains: %v, practice %q", err, cfg.Sealed.PracticeName)
	}
	set := minimalConfig(t) + "[sealed]\npractice_name = \"Praxis Weber\"\nsubject = \"Nachricht\"\ntext = \"Öffnen Sie message.pdf.\"\ncrisis = \"\"\nmax_bytes = 2048\n"
	cfg, err = loadString(t, set)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Sealed.Settings(); got.PracticeName != "Praxis Weber" || got.Subject != "Nachricht" || got.Text != "Öffnen Sie message.pdf." ||
		got.Crisis != "" || got.MaxBytes != 2048 {
		t.Fatalf("as set: %+v", got)
	}
}

// TestSealedErrors: every problem in [sealed] is named by key and line.
func TestSealedErrors(t *testing.T) {
	_, err := loadString(t, minimalConfig(t)+"[sealed]\nsubject = \"two\\nlines\"\ntext = \"  \"\nmax_bytes = 10\ncolour = \"blue\"\n")
	if err == nil {
		t.Fatal("loaded")
	}
	for _, w := range []string{":12: sealed.subject: must be one line", ":13: sealed.text: must say how to open the PDF",
		":14: sealed.max_bytes: must be at least 1024", ":15: sealed.colour: unknown key"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}
}
