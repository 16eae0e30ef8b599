package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// serviceDataDir makes the data_dir of cfgPath belong to another user, as
// the Debian package makes /var/lib/sealpost the sealpost user's.
func serviceDataDir(t *testing.T, cfgPath string, uid int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: an admin's sudo in the service's data_dir")
	}
	dataDir := filepath.Join(filepath.Dir(cfgPath), "data")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The test's own temporary folders are root's 0700: let the user reach it.
	for d := filepath.Dir(cfgPath); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	if err := os.Chown(dataDir, uid, uid); err != nil {
		t.Fatal(err)
	}
	return dataDir
}

// TestRootCommandsKeepDataDirOwner: `sudo sealpost check` (the documented
// step) and the other commands run as root leave every file they make below
// data_dir to its owner, the databases 0600; serve as root refuses with the
// line to run instead; check names a file that the service cannot change.
func TestRootCommandsKeepDataDirOwner(t *testing.T) {
	const service = 65534
	cfgPath := writeConfig(t, "")
	dataDir := serviceDataDir(t, cfgPath, service)

	for _, args := range [][]string{
		{"check", "--offline", "-c", cfgPath},
		{"consent", "add", "anna@client.example", "--evidence", "form 1", "-c", cfgPath},
		{"queue", "list", "-c", cfgPath},
		{"keys", "list", "-c", cfgPath},
	} {
		out, errOut, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", args[0], code, out, errOut)
		}
		if strings.Contains(errOut, "stay root's") {
			t.Errorf("%s: %s", args[0], errOut)
		}
	}
	made := 0
	filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := d.Info()
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != service || st.Gid != service {
			t.Errorf("%s belongs to %d:%d, want the data_dir's owner %d", p, st.Uid, st.Gid, service)
		}
		made++
		return nil
	})
	if made < 3 {
		t.Errorf("only %d entries in data_dir: check made no registry or keyring", made)
	}
	for _, db := range []string{"registry.db", "keyring.db"} {
		fi, err := os.Stat(filepath.Join(dataDir, db))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", db, fi.Mode(), err)
		}
	}

	_, errOut, code := runCLI(t, "", "serve", "-c", cfgPath)
	if code != 1 || !strings.Contains(errOut, "sudo -u nobody sealpost serve -c "+cfgPath) {
		t.Errorf("serve as root in the service's data_dir: exit %d, %q", code, errOut)
	}

	// A file an older version's sudo left: check fails and says how to fix it.
	stray := filepath.Join(dataDir, "loghash.key")
	os.WriteFile(stray, nil, 0o600)
	os.Chown(stray, 4321, 4321)
	out, _, code := runCLI(t, "", "check", "--offline", "-c", cfgPath)
	if code != 1 || !strings.Contains(out, "FAIL every file below data_dir belongs to its owner nobody: 1 do not (loghash.key: 4321)") ||
		!strings.Contains(out, "sudo chown -R nobody:nogroup "+dataDir) {
		t.Errorf("check with a file of another user's: exit %d\n%s", code, out)
	}
}

// TestCheckWarnsOpenDataDir: a data_dir others can list (an admin's mkdir,
// a container volume) is named, with the chmod that fixes it.
func TestCheckWarnsOpenDataDir(t *testing.T) {
	cfgPath := writeConfig(t, "")
	dataDir := filepath.Join(filepath.Dir(cfgPath), "data")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dataDir, 0o755)
	out, errOut, code := runCLI(t, "", "check", "--offline", "-c", cfgPath)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "WARN data_dir "+dataDir+" has mode 0755: other users of this machine can list the clinical data in it; make it the service's alone: chmod 700 "+dataDir) {
		t.Errorf("no warning about a data_dir others can read:\n%s", out)
	}
	os.Chmod(dataDir, 0o700)
	out, _, _ = runCLI(t, "", "check", "--offline", "-c", cfgPath)
	if strings.Contains(out, "has mode") {
		t.Errorf("a private data_dir warned about:\n%s", out)
	}
}
