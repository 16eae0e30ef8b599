package setup

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/sealpost/sealpost/internal/config"
)

// placeholder is what the Debian package installs (deploy/Makefile).
func placeholder(dataDir string) string {
	return packagedDefaultMarker + "\n" + `data_dir = "` + dataDir + `"
[smtp]
hostname = "localhost"
submission = "127.0.0.1:2587"
[policy]
notice = "Confidential."
[[account]]
username = "therapist"
password_hash = "$2a$11$CVfslOysRKWm9l7eyJhIWeoW1.jjtFdq4GBv0hCI1B0hw/xnr5xny"
addresses = ["therapist@practice.example"]
`
}

func options(dir string) Options {
	return Options{Dir: dir, Domain: "practice.example", Hostname: "sealpost.practice.example", User: "therapist",
		Address: "therapist@practice.example", IPs: []net.IP{net.ParseIP("192.168.1.10")}}
}

// listing is every path below dir with its content, to show that nothing changed.
func listing(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		out[p] = string(b)
		return nil
	})
	return out
}

func equalListings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestWriteChangesNothingWhenAFileIsInTheWay: after a purge and a new
// install, an earlier practice-key.asc is in the folder: init names it and
// every other file in the way, and leaves the package's placeholder (which
// the package's next postinst needs) and everything else as it was.
func TestWriteChangesNothingWhenAFileIsInTheWay(t *testing.T) {
	for _, leftover := range []string{PracticeKeyFile, ArchivePrivateKeyFile, "tls/ca-key.pem", CSRFile} {
		t.Run(leftover, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte(placeholder("/var/lib/sealpost")), 0o640)
			os.MkdirAll(filepath.Dir(filepath.Join(dir, leftover)), 0o700)
			os.WriteFile(filepath.Join(dir, leftover), []byte("an earlier install's key"), 0o600)
			before := listing(t, dir)
			_, err := Write(options(dir))
			if err == nil || !strings.Contains(err.Error(), "nothing was changed: "+filepath.Join(dir, leftover)) ||
				!strings.Contains(err.Error(), "never overwrites keys") {
				t.Fatalf("err = %v", err)
			}
			if after := listing(t, dir); !equalListings(before, after) {
				t.Errorf("init changed the folder although it stopped:\nbefore %v\nafter  %v", keys(before), keys(after))
			}
		})
	}
}

// TestWriteLeavesNothingHalfDone: a failure while writing (here the
// archive key's place cannot be made, after the practice's keys were
// written) removes what was written, and the placeholder stays.
func TestWriteLeavesNothingHalfDone(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(placeholder("/var/lib/sealpost")), 0o640)
	before := listing(t, dir)
	o := options(dir)
	o.ArchiveKeyOut = "/proc/1/no-such-folder/archive-key.asc"
	if _, err := Write(o); err == nil {
		t.Fatal("init went on without a place for the archive key")
	}
	if after := listing(t, dir); !equalListings(before, after) {
		t.Errorf("a failed init left files behind:\nbefore %v\nafter  %v", keys(before), keys(after))
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestWriteReplacesThePlaceholder: the placeholder's data_dir is kept (the
// packaged service may write only there), the content rule of
// config.example.toml is in the configuration, the certificate request
// names the autoconfig and autodiscover names, and the archive's private
// key can be kept off the disk.
func TestWriteReplacesThePlaceholder(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(placeholder("/var/lib/sealpost")), 0o640)
	o := options(dir)
	o.ArchiveKeyOut = "-"
	res, err := Write(o)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(res.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/var/lib/sealpost" || res.DataDir != cfg.DataDir {
		t.Errorf("data_dir %q, want the placeholder's", cfg.DataDir)
	}
	example, err := config.Load("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(example.Policy.Rules) == 0 || !slices.Equal(cfg.Policy.Rules, example.Policy.Rules) {
		t.Errorf("init's content rules %+v, config.example.toml's %+v", cfg.Policy.Rules, example.Policy.Rules)
	}
	if !bytes.Contains(res.ArchivePrivateKey, []byte("PGP PRIVATE KEY BLOCK")) || res.ArchiveKeyPath != "" {
		t.Errorf("archive key returned: %d bytes, path %q", len(res.ArchivePrivateKey), res.ArchiveKeyPath)
	}
	if _, err := os.Stat(filepath.Join(dir, ArchivePrivateKeyFile)); err == nil {
		t.Error("the archive's private key is on the disk although it went to standard output")
	}
	b, _ := os.ReadFile(filepath.Join(dir, CSRFile))
	block, _ := pem.Decode(b)
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"sealpost.practice.example", "autoconfig.practice.example", "autodiscover.practice.example"}; !slices.Equal(csr.DNSNames, want) {
		t.Errorf("the request names %v, want %v", csr.DNSNames, want)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "tls", "cert.pem"))
	block, _ = pem.Decode(b)
	leaf, _ := x509.ParseCertificate(block.Bytes)
	for _, name := range []string{"sealpost.practice.example", "autoconfig.practice.example", "autodiscover.practice.example", "192.168.1.10"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("the certificate: %v", err)
		}
	}
	if _, err := Write(options(dir)); err == nil || !strings.Contains(err.Error(), "never overwrites a configuration") {
		t.Errorf("a second init: %v", err)
	}
}

// TestWriteKeepsKeysFromTheService: as root on a packaged install, what the
// service needs is readable by its group, and the local CA's key and the
// archive's private key are root's alone.
func TestWriteKeepsKeysFromTheService(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	defer func(g string) { serviceGroup = g }(serviceGroup)
	serviceGroup = "nogroup"
	dir := t.TempDir()
	if _, err := Write(options(dir)); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		ArchivePrivateKeyFile: "0:0:600", "tls/ca-key.pem": "0:0:600",
		ConfigFile: "0:65534:640", PracticeKeyFile: "0:65534:640", "tls/key.pem": "0:65534:640", CSRKeyFile: "0:65534:640",
		"tls/ca.pem": "0:0:644", ".": "0:65534:750", "tls": "0:65534:750",
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if got := fmt.Sprintf("%d:%d:%o", st.Uid, st.Gid, fi.Mode().Perm()); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
}
