package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/setup"
	"github.com/sealpost/sealpost/rules/pgp"
)

// TestInit: init writes a configuration that passes check, keys that load,
// and a password that logs in; a second run overwrites nothing.
func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc")
	out, errOut, code := runCLI(t, "", "init", "--dir", dir, "--domain", "Practice.Example")
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"MOVE THE ARCHIVE'S PRIVATE KEY OFFLINE", setup.ArchivePrivateKeyFile, "sealpost check -c " + filepath.Join(dir, setup.ConfigFile),
		`login "therapist", address therapist@practice.example`} {
		if !strings.Contains(out, want) {
			t.Errorf("init's output lacks %q:\n%s", want, out)
		}
	}
	for name, mode := range map[string]os.FileMode{setup.ConfigFile: 0o600, setup.PracticeKeyFile: 0o600, setup.ArchivePrivateKeyFile: 0o600,
		setup.ArchivePublicKeyFile: 0o644, "tls/request-key.pem": 0o600, "tls/request.csr": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if os.Geteuid() != 0 && fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	cfgPath := filepath.Join(dir, setup.ConfigFile)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != filepath.Join(dir, "data") || cfg.SMTP.Hostname != "sealpost.practice.example" ||
		cfg.Policy.InternalDomains[0] != "practice.example" || cfg.Accounts[0].Addresses[0] != "therapist@practice.example" {
		t.Errorf("config = %+v", cfg)
	}
	if _, err := pgp.LoadPracticeKey(cfg.PGP.PracticeKey, ""); err != nil {
		t.Errorf("practice key: %v", err)
	}
	if b, _ := os.ReadFile(cfg.Archive.PublicKey); strings.Contains(string(b), "PRIVATE") {
		t.Error("archive.public_key holds the private key")
	}

	// The password printed once is the one the hash stands for.
	pw := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(out)
	if pw == nil {
		t.Fatal("no password in init's output")
	}
	if err := bcrypt.CompareHashAndPassword([]byte(cfg.Accounts[0].PasswordHash), []byte(pw[1])); err != nil {
		t.Errorf("the printed password does not match the hash: %v", err)
	}

	out, errOut, code = runCLI(t, "", "check", "--offline", "-c", cfgPath)
	if code != 0 {
		t.Fatalf("check --offline on init's config: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "WARN the archive's private key is still on this server") {
		t.Errorf("check does not warn that the archive's private key is still beside the config:\n%s", out)
	}

	_, errOut, code = runCLI(t, "", "init", "--dir", dir, "--domain", "practice.example")
	if code != 1 || !strings.Contains(errOut, "never overwrites") {
		t.Errorf("second init: exit %d, %q", code, errOut)
	}
	_, _, code = runCLI(t, "", "init", "--dir", dir)
	if code != 2 {
		t.Errorf("init without --domain: exit %d, want 2", code)
	}
}

// TestInitArchiveKeyOffDisk: with --archive-key-out - the archive's private
// key goes to standard output alone (for a redirection, e.g. from a
// container), the rest to standard error, and nothing of it to the disk.
func TestInitArchiveKeyOffDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc")
	out, errOut, code := runCLI(t, "", "init", "--dir", dir, "--domain", "practice.example", "--ip", "192.168.1.10", "--archive-key-out", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.HasPrefix(out, "-----BEGIN PGP PRIVATE KEY BLOCK-----") || !strings.HasSuffix(strings.TrimSpace(out), "-----END PGP PRIVATE KEY BLOCK-----") {
		t.Errorf("standard output is not the key alone:\n%s", out)
	}
	if !strings.Contains(errOut, "(standard output: not on this disk)") || !strings.Contains(errOut, "192.168.1.10") ||
		!strings.Contains(errOut, "autodiscover.practice.example") {
		t.Errorf("what init says:\n%s", errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, setup.ArchivePrivateKeyFile)); err == nil {
		t.Error("the archive's private key is on the disk")
	}
	out, _, code = runCLI(t, "", "check", "--offline", "-c", filepath.Join(dir, setup.ConfigFile))
	if code != 0 || strings.Contains(out, "WARN the archive's private key") {
		t.Errorf("check: exit %d\n%s", code, out)
	}
}

// TestTLSRenew: on init's configuration, tls renew says until when the
// certificate and the CA hold; on a certificate from elsewhere it says it
// has nothing to renew.
func TestTLSRenew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc")
	if _, errOut, code := runCLI(t, "", "init", "--dir", dir, "--domain", "practice.example"); code != 0 {
		t.Fatal(errOut)
	}
	cfgPath := filepath.Join(dir, setup.ConfigFile)
	out, errOut, code := runCLI(t, "", "tls", "renew", "-c", cfgPath)
	if code != 0 || !strings.Contains(out, filepath.Join(dir, "tls", "cert.pem")+" is valid until ") || !strings.Contains(out, "The local CA ") {
		t.Errorf("tls renew: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = runCLI(t, "", "check", "--offline", "-c", cfgPath)
	if !strings.Contains(out, "ok   certificate "+filepath.Join(dir, "tls", "cert.pem")+" holds until ") || !strings.Contains(out, "ok   local CA ") {
		t.Errorf("check does not say until when the certificates hold:\n%s", out)
	}
	ca, _ := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	os.WriteFile(filepath.Join(dir, "tls", "ca-next.pem"), ca, 0o644)
	out, _, _ = runCLI(t, "", "check", "--offline", "-c", cfgPath)
	if !strings.Contains(out, "WARN next local CA "+filepath.Join(dir, "tls", "ca-next.pem")+" holds until ") {
		t.Errorf("check does not ask to hand out a waiting CA:\n%s", out)
	}
	other := writeConfig(t, "#smtp:\ntls_cert = \""+filepath.Join(dir, "tls", "ca.pem")+"\"\ntls_key = \""+filepath.Join(dir, "tls", "ca-key.pem")+"\"\n")
	out, _, code = runCLI(t, "", "tls", "renew", "-c", other)
	if code != 0 || !strings.Contains(out, "is not the certificate of sealpost's local CA") {
		t.Errorf("a certificate from elsewhere: exit %d\n%s", code, out)
	}
}
