package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/rules/pgp"
)

// TestCommandsInActivityLog: every command that changes what sealpost
// decides or sends leaves an activity record in the archive's chain (here
// with no relay running, so the command writes it itself): who ran it
// (the person behind sudo, and --by when it names someone else), what,
// which, and "command on the server". The Activity page and exports read
// these records.
func TestCommandsInActivityLog(t *testing.T) {
	t.Setenv("SUDO_USER", "alice")
	cfgPath := writeConfig(t, "")
	dir := filepath.Dir(cfgPath)
	keyFile := filepath.Join(dir, "carl.asc")
	carl := testutil.OpenPGPKey(t, "Carl", "carl@client.example")
	os.WriteFile(keyFile, testutil.ArmoredPublicKey(t, carl), 0o600)
	fpr := fmt.Sprintf("%X", carl.PrimaryKey.Fingerprint)
	dan := testutil.OpenPGPKey(t, "Dan", "dan@client.example")
	danFpr := fmt.Sprintf("%X", dan.PrimaryKey.Fingerprint)
	csvFile := filepath.Join(dir, "dora-intake.csv")
	os.WriteFile(csvFile, []byte("address,name,signed,evidence,expires\ndora@client.example,Dora,2026-02-01,form,\neve@client.example,Eve,2026-02-01,form,\n"), 0o600)

	tests := []struct {
		name        string
		stdin       string
		args        []string
		what        string
		who         string
		object      string // a prefix of the record's object; "" any
		notInObject string
	}{
		{"consent add", "", []string{"consent", "add", "anna@client.example", "--evidence", "intake form"}, "consent-recorded", "alice", "", ""},
		{"consent add --no-hold --by", "", []string{"consent", "add", "bob@client.example", "--evidence", "plan", "--no-hold", "--by", "Dr. Berg"},
			"consent-recorded-no-hold", "alice, as Dr. Berg", "", ""},
		{"consent add --prefer clear", "", []string{"consent", "add", "bea@client.example", "--evidence", "form", "--prefer", "clear"}, "consent-recorded-prefer-clear", "alice", "", ""},
		{"consent revoke", "", []string{"consent", "revoke", "anna@client.example", "--reason", "by phone"}, "consent-revoked", "alice", "", ""},
		{"consent import", "", []string{"consent", "import", csvFile}, "consents-imported", "alice", "2 consents", "dora"},
		{"professional", "", []string{"consent", "add", "--kind", "professional", "--domain", "clinic.example", "--evidence", "BAA"}, "professional-recorded", "alice", "", ""},
		{"professional revoked", "", []string{"consent", "revoke", "--domain", "clinic.example"}, "professional-revoked", "alice", "", ""},
		{"passphrase", "correct horse battery staple\n", []string{"consent", "passphrase", "anna@client.example"}, "passphrase-set", "alice", "", ""},
		{"passphrase removed", "", []string{"consent", "passphrase", "anna@client.example", "--remove"}, "passphrase-removed", "alice", "", ""},
		{"away", "", []string{"away", "--account", "therapist", "--from", "2026-12-24", "--until", "2027-01-02"}, "absence-added", "alice", "1 (therapist, 2026-12-24 to 2027-01-02)", ""},
		{"away cancel", "", []string{"away", "cancel", "1", "--account", "therapist"}, "absence-cancelled", "alice", "1 (therapist, 2026-12-24 to 2027-01-02)", ""},
		{"keys import", "", []string{"keys", "import", keyFile}, "key-imported", "alice", "", ""},
		{"keys remove", "", []string{"keys", "remove", fpr}, "key-removed", "alice", "", ""},
		{"keys accept", "", []string{"keys", "accept", danFpr}, "key-accepted", "alice", danFpr, ""},
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// Dan offered his key in an Autocrypt header: it waits for keys accept.
	err = withKeyring(cfg, func(k *pgp.Keyring) error {
		_, err := k.Propose(context.Background(), bytes.NewReader(testutil.ArmoredPublicKey(t, dan)), "autocrypt")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tt.stdin, append(tt.args, "-c", cfgPath)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
			}
			if strings.Contains(stderr, "not in the activity log") {
				t.Errorf("stderr: %s", stderr)
			}
			found, err := archive.FindActivity(cfg.ArchiveDir(), time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if len(found) <= seen {
				t.Fatalf("no new activity record; all: %+v", found)
			}
			got := found[len(found)-1]
			seen = len(found)
			if got.What != tt.what || got.Who != tt.who || got.From != "command on the server" ||
				!strings.HasPrefix(got.Object, tt.object) || tt.notInObject != "" && strings.Contains(got.Object, tt.notInObject) {
				t.Errorf("activity %+v; want %s by %s, object %q", got, tt.what, tt.who, tt.object)
			}
		})
	}
}
