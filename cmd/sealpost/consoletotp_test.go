package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/rules"
)

// TestTOTPFileMovedOnStart: a data_dir with the console-totp.json an older
// console kept: at the console's start its secrets move into the registry
// (encrypted there: registry.db holds no secret in clear) and the file
// goes.
func TestTOTPFileMovedOnStart(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	os.MkdirAll(cfg.DataDir, 0o700)
	file := filepath.Join(cfg.DataDir, totpFile)
	os.WriteFile(file, []byte(`{"therapist": {"secret": "`+secret+`", "since": "2026-12-01T09:00:00Z", "last_step": 7}}`), 0o600)
	reg, err := openRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if err := moveTOTPFile(cfg, &policyAndArchive{registry: reg}, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("%s is still there: %v", file, err)
	}
	got, ok, err := reg.LoginCode(context.Background(), "therapist")
	if err != nil || !ok || got.Secret != secret || got.LastStep != 7 {
		t.Fatalf("the registry has %+v %v %v", got, ok, err)
	}
	for _, name := range []string{"registry.db", "registry.db-wal"} {
		if b, _ := os.ReadFile(filepath.Join(cfg.DataDir, name)); bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret in clear", name)
		}
	}
}

// TestConsoleCodesOff: for someone who lost their phone, `console
// codes-off LOGIN` removes the login's secret (the password alone works
// again), recorded in the activity log as the person behind sudo; a login
// without codes, or a name that is no login, changes nothing.
func TestConsoleCodesOff(t *testing.T) {
	t.Setenv("SUDO_USER", "alice")
	cfgPath := writeConfig(t, "")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := openRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := reg.SetLoginCode(ctx, "therapist", rules.LoginCode{Secret: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", Since: time.Now()}); err != nil {
		t.Fatal(err)
	}
	reg.Close()

	tests := []struct {
		login  string
		code   int
		stdout string
	}{
		{"therapist", 0, "Login codes are off for therapist"},
		{"therapist", 0, "therapist has no login codes: nothing to turn off."},
		{"nobody", 1, ""},
	}
	for _, tt := range tests {
		stdout, stderr, code := runCLI(t, "", "console", "codes-off", tt.login, "-c", cfgPath)
		if code != tt.code || !strings.Contains(stdout, tt.stdout) {
			t.Errorf("codes-off %s: exit %d\n%s%s", tt.login, code, stdout, stderr)
		}
	}
	reg, err = openRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, on, err := reg.LoginCode(ctx, "therapist"); on || err != nil {
		t.Errorf("the secret is still there: %v %v", on, err)
	}
	found, err := archive.FindActivity(cfg.ArchiveDir(), time.Time{})
	if err != nil || len(found) != 1 || found[0].What != "login-codes-removed" || found[0].Object != "therapist" || found[0].Who != "alice" {
		t.Errorf("activity %+v %v; want one login-codes-removed for therapist by alice", found, err)
	}
}
