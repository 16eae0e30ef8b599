package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/internal/testutil"
)

// gpgIn runs gpg with its own home in home and returns its output and
// whether it exited 0.
func gpgIn(t *testing.T, home, dir string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--no-tty"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// TestExportVerifiesWithoutSealpost: an auditor checks an export with gpg
// and sha256sum alone, as the README shows: the seal key from the export
// imports, its fingerprint is the one sealpost prints for the archive (and
// the same in every export), SHA256SUMS.asc is a good signature over
// SHA256SUMS, which lists every file; a changed file or a changed
// SHA256SUMS is caught.
func TestExportVerifiesWithoutSealpost(t *testing.T) {
	testutil.RequireTools(t, "gpg", "sha256sum")
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	for i := range 3 {
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	out := filepath.Join(t.TempDir(), "export")
	rep, err := Export(ctx, f.dir, f.priv, out, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	fp, err := SealKeyFingerprint(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	var man struct {
		Archive struct {
			Fingerprint string `json:"seal_key_fingerprint"`
		} `json:"archive"`
	}
	mb, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err := json.Unmarshal(mb, &man); err != nil {
		t.Fatal(err)
	}
	if man.Archive.Fingerprint != fp || rep.SealKeyFingerprint != fp || len(strings.ReplaceAll(fp, " ", "")) != 40 {
		t.Fatalf("fingerprints: manifest %q, report %q, archive %q", man.Archive.Fingerprint, rep.SealKeyFingerprint, fp)
	}

	home := t.TempDir()
	os.Chmod(home, 0o700)
	if o, ok := gpgIn(t, home, out, "--import", "seal-key.asc"); !ok {
		t.Fatalf("gpg --import seal-key.asc:\n%s", o)
	}
	list, _ := gpgIn(t, home, out, "--with-colons", "--fingerprint")
	if !strings.Contains(list, "fpr:::::::::"+strings.ReplaceAll(fp, " ", "")+":") || !strings.Contains(list, "sealpost archive seal key") {
		t.Errorf("gpg shows the imported key as:\n%s\nwant fingerprint %s", list, fp)
	}
	if o, ok := gpgIn(t, home, out, "--verify", "SHA256SUMS.asc", "SHA256SUMS"); !ok || !strings.Contains(o, "Good signature") {
		t.Fatalf("gpg --verify SHA256SUMS.asc SHA256SUMS:\n%s", o)
	}
	sums, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	for _, want := range []string{"  manifest.json\n", "  index.html\n", "  seal.pub\n", "  seal-key.asc\n", "  messages/msg0001.eml\n"} {
		if !bytes.Contains(sums, []byte(want)) {
			t.Errorf("SHA256SUMS does not list %q:\n%s", want, sums)
		}
	}
	check := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
	check.Dir = out
	if o, err := check.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, o)
	}

	// The same key in the next export. (Its self-signature differs: go-crypto
	// salts every signature against fault attacks on EdDSA.)
	out2 := filepath.Join(t.TempDir(), "export")
	if _, err := Export(ctx, f.dir, f.priv, out2, Filter{}); err != nil {
		t.Fatal(err)
	}
	keyID := strings.ReplaceAll(fp, " ", "")[24:]
	if o, ok := gpgIn(t, home, out2, "--import", "seal-key.asc"); !ok || !strings.Contains(o, "key "+keyID+":") || strings.Contains(o, "imported") {
		t.Errorf("the next export's seal-key.asc is not the same key (%v):\n%s", ok, o)
	}

	// Tampering shows.
	os.WriteFile(filepath.Join(out, "SHA256SUMS"), bytes.Replace(sums, []byte("manifest.json"), []byte("manifest.jsoN"), 1), 0o600)
	if o, ok := gpgIn(t, home, out, "--verify", "SHA256SUMS.asc", "SHA256SUMS"); ok {
		t.Errorf("gpg accepts a changed SHA256SUMS:\n%s", o)
	}
	os.WriteFile(filepath.Join(out, "SHA256SUMS"), sums, 0o600)
	os.WriteFile(filepath.Join(out, "manifest.json"), append(mb, ' '), 0o600)
	check = exec.Command("sha256sum", "-c", "--quiet", "SHA256SUMS")
	check.Dir = out
	if o, err := check.CombinedOutput(); err == nil {
		t.Errorf("sha256sum -c accepts a changed manifest.json:\n%s", o)
	}
}

// TestExportSealKeyChecks: an export is refused, before anything is
// written, when the seal key is missing or is not the key of seal.pub, or
// when its folder is inside the archive's.
func TestExportSealKeyChecks(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	m, body := testMessage(1, "anna@client.example")
	if err := a.RecordMessage(context.Background(), m, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	seal, _ := os.ReadFile(filepath.Join(f.dir, "seal.key"))
	for _, tt := range []struct {
		name    string
		prepare func()
		out     string
		want    string
	}{
		{"inside the archive", func() {}, filepath.Join(f.dir, "export"), "inside the archive folder"},
		{"no seal.key", func() { os.Remove(filepath.Join(f.dir, "seal.key")) }, "", "seal.key is missing"},
		{"another seal.key", func() {
			os.WriteFile(filepath.Join(f.dir, "seal.key"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
		}, "", "does not belong to"},
	} {
		tt.prepare()
		out := tt.out
		if out == "" {
			out = filepath.Join(t.TempDir(), "export")
		}
		_, err := Export(context.Background(), f.dir, f.priv, out, Filter{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want an error saying %q", tt.name, err, tt.want)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("%s: the export folder was made", tt.name)
		}
		os.WriteFile(filepath.Join(f.dir, "seal.key"), seal, 0o600)
	}
}
