package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/internal/password"
)

// writeConfig writes a minimal valid configuration with extra appended.
func writeConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	h, _ := bcrypt.GenerateFromPassword([]byte("pw-for-tests"), bcrypt.MinCost)
	cfg := `data_dir = "data"
[smtp]
hostname = "localhost"
submission = "127.0.0.1:0"
%SMTP%
[policy]
notice = "Confidential."
[[account]]
username = "therapist"
password_hash = "` + string(h) + `"
addresses = ["therapist@practice.example"]
` + extra
	smtpExtra := ""
	if i := strings.Index(cfg, "#smtp:"); i >= 0 {
		smtpExtra = cfg[i+len("#smtp:"):]
		cfg = cfg[:i]
	}
	cfg = strings.Replace(cfg, "%SMTP%", smtpExtra, 1)
	path := filepath.Join(dir, "sealpost.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &o, &e)
	return o.String(), e.String(), code
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		code  int
		want  []string
	}{
		{"outbox", "", 0, []string{"ok   configuration", "ok   data_dir", "upstream is the outbox", "All checks passed."}},
		{"unreadable certificate", "#smtp:tls_cert = \"missing-cert.pem\"\ntls_key = \"missing-key.pem\"\n", 1,
			[]string{"FAIL smtp.tls_cert", "missing-key.pem (line 5)"}},
		{"unreadable files", `upstream_username = "u@provider.example"
upstream_password_file = "missing-password"
[upstream]
address = "smtp.provider.example:587"
ca_file = "missing-ca.pem"
`, 1, []string{"FAIL upstream.ca_file", "FAIL account[0].upstream_password_file", "missing-password", "check(s) failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.extra)
			stdout, stderr, code := runCLI(t, "", "check", "--offline", "-c", path)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout+stderr, w) {
					t.Errorf("output lacks %q:\n%s%s", w, stdout, stderr)
				}
			}
		})
	}
}

func TestUsageAndExitCodes(t *testing.T) {
	path := writeConfig(t, "")
	if _, stderr, code := runCLI(t, "", "nonsense"); code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Errorf("unknown command: exit %d, %q", code, stderr)
	}
	if _, stderr, code := runCLI(t, "", "check", "--bogus", "-c", path); code != 2 || !strings.Contains(stderr, "usage: sealpost check") {
		t.Errorf("unknown flag: exit %d, %q", code, stderr)
	}
	if _, stderr, code := runCLI(t, "", "check", "-c", filepath.Join(t.TempDir(), "none.toml")); code != 1 || strings.Count(stderr, "\n") != 1 {
		t.Errorf("missing config: exit %d, want 1 with one line, got %q", code, stderr)
	}
	stdout, _, code := runCLI(t, "a long enough password\n", "passwd")
	if code != 0 || password.CheckHash(strings.TrimSpace(stdout)) != nil {
		t.Errorf("passwd: exit %d, %q", code, stdout)
	}
	if _, _, code := runCLI(t, "short\n", "passwd"); code != 1 {
		t.Errorf("passwd with a short password: exit %d", code)
	}
	if stdout, _, code := runCLI(t, "", "queue", "list", "-c", path); code != 0 || !strings.Contains(stdout, "empty") {
		t.Errorf("queue list on a fresh data dir: exit %d, %q", code, stdout)
	}
	if _, stderr, code := runCLI(t, "", "queue", "drop", "0000", "-c", path); code != 1 || !strings.Contains(stderr, "no such message") {
		t.Errorf("queue drop of nothing: exit %d, %q", code, stderr)
	}
}
