package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/rules/pgp"
)

// TestExportPracticeKey: the exported practice key opens only with the
// passphrase the admin chose; GnuPG imports it, and RNP (Thunderbird's
// OpenPGP engine) decrypts with it what a client encrypted to the key the
// Autocrypt header offered.
func TestExportPracticeKey(t *testing.T) {
	dir := t.TempDir()
	practice := testutil.OpenPGPKey(t, "practice.example practice", "practice@practice.example")
	var priv bytes.Buffer
	w, _ := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	practice.SerializePrivateWithoutSigning(w, nil)
	w.Close()
	keyFile := filepath.Join(dir, "practice-key.asc")
	os.WriteFile(keyFile, priv.Bytes(), 0o600)
	cfg := writeConfig(t, "[pgp]\npractice_key = \""+keyFile+"\"\n")
	out := filepath.Join(dir, "for-thunderbird.asc")
	const passphrase = "lantern violet harbor quarry"
	if _, stderr, code := runCLI(t, "short\n", "keys", "export-practice", "--out", out, "-c", cfg); code != 1 || !strings.Contains(stderr, "at least 12 characters") {
		t.Fatalf("a short passphrase: exit %d %s", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a file was written with a short passphrase")
	}
	stdout, stderr, code := runCLI(t, passphrase+"\n", "keys", "export-practice", "--out", out, "-c", cfg)
	if code != 0 || !strings.Contains(stdout, pgp.Fingerprint(practice)) {
		t.Fatalf("export: exit %d\n%s%s", code, stdout, stderr)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the file: %v %v", fi, err)
	}
	if _, _, code := runCLI(t, passphrase+"\n", "keys", "export-practice", "--out", out, "-c", cfg); code != 1 {
		t.Error("an existing file was overwritten")
	}
	b, _ := os.ReadFile(out)
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	if err != nil || len(el) != 1 || pgp.Fingerprint(el[0]) != pgp.Fingerprint(practice) || !el[0].PrivateKey.Encrypted {
		t.Fatalf("the exported key: %v; want the practice key, its private part encrypted", err)
	}
	if el[0].DecryptPrivateKeys([]byte("wrong passphrase")) == nil {
		t.Fatal("the exported key opens with a wrong passphrase")
	}
	if err := el[0].DecryptPrivateKeys([]byte(passphrase)); err != nil {
		t.Fatalf("the exported key does not open with its passphrase: %v", err)
	}

	testutil.RequireTools(t, "gpg", "rnp", "rnpkeys")
	home := filepath.Join(dir, "gnupg")
	os.Mkdir(home, 0o700)
	if out, err := exec.Command("gpg", "--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase, "--import", out).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "secret keys imported: 1") {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}
	// A client's reply, encrypted to the practice key as their mail program learnt it.
	var msg bytes.Buffer
	aw, _ := armor.Encode(&msg, "PGP MESSAGE", nil)
	pw, err := openpgp.Encrypt(aw, []*openpgp.Entity{practice}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pw.Write([]byte("Thank you, see you on Tuesday.\n"))
	pw.Close()
	aw.Close()
	msgFile := filepath.Join(dir, "reply.asc")
	os.WriteFile(msgFile, msg.Bytes(), 0o600)
	rnpHome := filepath.Join(dir, "rnp")
	os.Mkdir(rnpHome, 0o700)
	if out, err := exec.Command("rnpkeys", "--homedir", rnpHome, "--import", out).CombinedOutput(); err != nil {
		t.Fatalf("rnpkeys --import: %v\n%s", err, out)
	}
	got, err := exec.Command("rnp", "--homedir", rnpHome, "--password", passphrase, "--decrypt", msgFile, "--output", "-").CombinedOutput()
	if err != nil || !strings.Contains(string(got), "see you on Tuesday") {
		t.Fatalf("rnp --decrypt with the exported key: %v\n%s", err, got)
	}
}
