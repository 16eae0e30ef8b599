package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConsentCommands(t *testing.T) {
	cfg := writeConfig(t, "")
	run := func(stdin string, args ...string) (string, string, int) {
		return runCLI(t, stdin, append(args, "-c", cfg)...)
	}
	if _, stderr, code := run("", "consent", "add", "anna@client.example"); code != 2 || !strings.Contains(stderr, "--evidence is required") {
		t.Errorf("add without evidence: exit %d %q", code, stderr)
	}
	stdout, stderr, code := run("", "consent", "add", "Anna@Client.example", "--evidence", "intake form p.3, paper chart", "--date", "2026-01-05", "--name", "Chart 17", "--by", "admin")
	if code != 0 || !strings.Contains(stdout, "anna@client.example may receive unencrypted email (signed 2026-01-05, no expiry)") {
		t.Fatalf("add: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, stderr, code := run("", "consent", "add", "not-an-address", "--evidence", "x"); code != 1 || strings.Count(stderr, "\n") < 1 {
		t.Errorf("add with a bad address: exit %d %q", code, stderr)
	}
	csv := filepath.Join(t.TempDir(), "consents.csv")
	os.WriteFile(csv, []byte("address,name,signed,evidence,expires\nbob@client.example,Bob,2026-02-01,form,2027-02-01\ncarl@client.example,,2026-99-01,form,\n"), 0o600)
	_, stderr, code = run("", "consent", "import", csv)
	if code != 1 || !strings.Contains(stderr, "line 3: signed date \"2026-99-01\"") || !strings.Contains(stderr, "nothing was imported") {
		t.Errorf("bad import: exit %d %q", code, stderr)
	}
	os.WriteFile(csv, []byte("address,name,signed,evidence,expires\nbob@client.example,Bob,2026-02-01,form,2027-02-01\n"), 0o600)
	if stdout, _, code := run("", "consent", "import", csv); code != 0 || !strings.Contains(stdout, "Imported 1") {
		t.Errorf("import: exit %d %q", code, stdout)
	}
	if stdout, stderr, code := run("", "consent", "revoke", "anna@client.example", "--reason", "asked by phone"); code != 0 || !strings.Contains(stdout, "Revoked") {
		t.Errorf("revoke: exit %d %q %q", code, stdout, stderr)
	}
	stdout, _, _ = run("", "consent", "list")
	if !strings.Contains(stdout, "bob@client.example") || strings.Contains(stdout, "anna@client.example") {
		t.Errorf("list shows only active consents:\n%s", stdout)
	}
	stdout, _, code = run("", "consent", "list", "--all", "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(stdout), &list); err != nil || code != 0 || len(list) != 2 {
		t.Fatalf("list --all --json: exit %d, %v\n%s", code, err, stdout)
	}
	if list[0]["address"] != "anna@client.example" || list[0]["state"] != "revoked" || list[0]["revocation_reason"] != "asked by phone" || list[0]["client"] != "Chart 17" {
		t.Errorf("revoked entry %v", list[0])
	}
}
