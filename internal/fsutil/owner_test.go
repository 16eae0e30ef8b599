package fsutil

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

const nobody = 65534

func uidOf(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// serviceDir is a folder that belongs to another user than root, as
// /var/lib/sealpost belongs to sealpost.
func serviceDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: hands files over to another user")
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestKeepOwnerBelow: what root made below the service's folder becomes the
// service's; what lies outside, reached through a symlink or a second hard
// link, stays root's.
func TestKeepOwnerBelow(t *testing.T) {
	dir := serviceDir(t)
	outside := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(outside, []byte("root's own"), 0o600)
	linked := filepath.Join(filepath.Dir(outside), "linked")
	os.WriteFile(linked, []byte("root's too"), 0o600)

	mine := []string{"registry.db", "archive", "archive/seg-00000001.log", "tls", "tls/cert.pem"}
	os.MkdirAll(filepath.Join(dir, "archive"), 0o700)
	os.MkdirAll(filepath.Join(dir, "tls"), 0o700)
	for _, f := range []string{"registry.db", "archive/seg-00000001.log", "tls/cert.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(dir, "escape-dir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(linked, filepath.Join(dir, "hardlink")); err != nil {
		t.Fatal(err)
	}
	// Root's files from before the command are not its doing: left alone.
	if n, _ := KeepOwnerBelow(dir, time.Now().Add(time.Hour)); n != 0 {
		t.Errorf("files older than the command were handed over: %d", n)
	}
	n, err := KeepOwnerBelow(dir, time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != len(mine) {
		t.Errorf("changed %d, want %d", n, len(mine))
	}
	for _, f := range mine {
		if got := uidOf(t, filepath.Join(dir, f)); got != nobody {
			t.Errorf("%s belongs to %d, want %d", f, got, nobody)
		}
	}
	for _, f := range []string{outside, linked, filepath.Join(filepath.Dir(outside), ".")} {
		if got := uidOf(t, f); got != 0 {
			t.Errorf("%s outside the folder was handed over (uid %d)", f, got)
		}
	}
	if n, _ := KeepOwnerBelow(dir, time.Time{}); n != 0 {
		t.Errorf("a second pass changed %d", n)
	}
}

func TestKeepOwner(t *testing.T) {
	dir := serviceDir(t)
	p := filepath.Join(dir, "passphrase.key")
	os.WriteFile(p, []byte("k"), 0o600)
	if err := KeepOwner(p, dir); err != nil {
		t.Fatal(err)
	}
	if got := uidOf(t, p); got != nobody {
		t.Errorf("owner %d, want %d", got, nobody)
	}
	if err := KeepOwner("/etc/passwd", dir); err == nil || uidOf(t, "/etc/passwd") != 0 {
		t.Errorf("a path outside the folder: %v", err)
	}
	if _, ok := ForeignOwner(t.TempDir()); ok {
		t.Error("root's own folder needs no hand-over")
	}
}

// TestCreatePrivate: a new file is 0600; one made world-readable before
// loses the group's and others' permissions; its content stays.
func TestCreatePrivate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "keyring.db")
	if err := CreatePrivate(p); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 || fi.Size() != 0 {
		t.Errorf("new: %v, %d bytes", fi.Mode(), fi.Size())
	}
	old := filepath.Join(dir, "registry.db")
	os.WriteFile(old, []byte("SQLite format 3"), 0o644)
	os.Chmod(old, 0o644)
	if err := CreatePrivate(old); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(old); fi.Mode().Perm() != 0o600 || fi.Size() != 15 {
		t.Errorf("existing: %v, %d bytes", fi.Mode(), fi.Size())
	}
}
