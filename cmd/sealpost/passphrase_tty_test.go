package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sealpost/sealpost/internal/testutil"
)

// openPTY returns a pseudo-terminal's two ends: what the command reads
// as its terminal (tty), and what the test types into and reads the
// terminal's echo from (typist).
func openPTY(t *testing.T) (typist, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0)
	}
	if err != nil {
		m.Close()
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatalf("open the pseudo-terminal's tty: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// TestConsentPassphraseTerminal types the passphrase on a real terminal:
// asked twice, never echoed, and two that differ change nothing.
func TestConsentPassphraseTerminal(t *testing.T) {
	const secret = "lantern copper quiet harbor"
	tests := []struct {
		name          string
		first, second string
		code          int
		want          string
		stored        string
	}{
		{"the same twice", secret, secret, 0, "Passphrase set (#1) for anna@client.example", secret},
		{"two that differ", secret, secret + "s", 1, "the two passphrases differ; nothing was changed", ""},
		{"too short, typed twice", "short one", "short one", 1, "shorter than 12 characters", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeConfig(t, "")
			typist, tty := openPTY(t)
			var stdout bytes.Buffer
			stderr := &testutil.LockedBuffer{}
			done := make(chan int, 1)
			go func() {
				done <- run(context.Background(), []string{"consent", "passphrase", "anna@client.example", "-c", cfg}, tty, &stdout, stderr)
			}()
			typeHidden(t, typist, tty, stderr, "Passphrase for anna@client.example", tt.first)
			typeHidden(t, typist, tty, stderr, "The same passphrase again", tt.second)
			code := <-done
			if code != tt.code || !strings.Contains(stdout.String()+stderr.String(), tt.want) {
				t.Fatalf("exit %d, want %d and %q\n%s%s", code, tt.code, tt.want, stdout.String(), stderr.String())
			}
			tty.Close()
			echoed, _ := io.ReadAll(typist) // the tty is closed: what the terminal echoed, then EIO
			if strings.Contains(string(echoed), "harbor") || strings.Contains(string(echoed), "short") {
				t.Errorf("the terminal echoed the passphrase: %q", echoed)
			}
			if strings.Contains(stdout.String()+stderr.String(), tt.first) {
				t.Errorf("the passphrase was printed:\n%s%s", stdout.String(), stderr.String())
			}
			if got := storedPassphrase(t, cfg, "anna@client.example"); got != tt.stored {
				t.Errorf("stored %q, want %q", got, tt.stored)
			}
		})
	}
}

// typeHidden types line once the prompt is shown and the terminal no
// longer echoes: what a person at the keyboard would wait for.
func typeHidden(t *testing.T, typist, tty *os.File, prompts *testutil.LockedBuffer, prompt, line string) {
	t.Helper()
	testutil.WaitFor(t, "the prompt "+prompt+" with echo off", func() bool {
		if !strings.Contains(prompts.String(), prompt) {
			return false
		}
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		return err == nil && tio.Lflag&unix.ECHO == 0
	})
	if _, err := typist.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
}

// TestConsentFilesKeepDataDirOwner: root running a consent command leaves
// the registry's files to data_dir's owner, so the service can still open
// them.
func TestConsentFilesKeepDataDirOwner(t *testing.T) {
	testutil.RequireRoot(t, "run the command as root in a folder of another user's")
	const service = 65534 // nobody
	cfg := writeConfig(t, "")
	data := filepath.Join(filepath.Dir(cfg), "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, service, service); err != nil {
		t.Fatal(err)
	}
	if stdout, stderr, code := runCLI(t, "river maple lantern quiet\n", "consent", "passphrase", "anna@client.example", "-c", cfg); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	ents, err := os.ReadDir(data)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
		fi, err := os.Lstat(filepath.Join(data, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != service || st.Gid != service {
			t.Errorf("%s is owned by %d:%d, want data_dir's owner %d:%d", e.Name(), st.Uid, st.Gid, service, service)
		}
	}
	if !names["registry.db"] || !names["passphrase.key"] {
		t.Errorf("data_dir holds %v, want registry.db and passphrase.key", names)
	}
}
