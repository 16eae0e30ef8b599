package main

import (
	"os"
	"os/user"
	"path/filepath"
	"testing"
)

// TestInvokingUser: --by defaults to the person behind the command: the
// user who ran sudo, else the user who logged in (not the service account
// su or runuser switched to), else the user running it.
func TestInvokingUser(t *testing.T) {
	defer func(p string) { loginUIDFile = p }(loginUIDFile)
	loginUID := filepath.Join(t.TempDir(), "loginuid")
	loginUIDFile = loginUID
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, sudoUser, loginUID, want string
	}{
		{"sudo -u sealpost", "alice", "1000", "alice"},
		{"su - sealpost, logged in as root", "", "0", "root"},
		{"sudo -i, then sudo -u sealpost", "root", "0", "root"},
		{"a service or a container: no login", "", "4294967295", me.Username},
		{"no sudo, no login uid", "", "", me.Username},
		{"by flag", "alice", "0", "bob"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SUDO_USER", tc.sudoUser)
			os.Remove(loginUID)
			if tc.loginUID != "" {
				os.WriteFile(loginUID, []byte(tc.loginUID+"\n"), 0o600)
			}
			by := ""
			if tc.name == "by flag" {
				by = "bob"
			}
			if got := recorder(by); got != tc.want {
				t.Errorf("recorder(%q) = %q, want %q", by, got, tc.want)
			}
		})
	}
}
