package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/sealpost/sealpost/internal/config"
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
