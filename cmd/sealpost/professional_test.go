package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestProfessionalCommands: professionals are recorded by address or
// domain with --kind professional, listed apart from clients (never in
// the clients' JSON), and withdrawn with consent revoke, which tells a
// professional from a client by itself.
func TestProfessionalCommands(t *testing.T) {
	cfg := writeConfig(t, "")
	run := func(args ...string) (string, string, int) {
		return runCLI(t, "", append(args, "-c", cfg)...)
	}
	tests := []struct {
		args   []string
		code   int
		output string
	}{
		{[]string{"consent", "add", "--domain", "clinic.example", "--evidence", "BAA"}, 2, "--domain is for --kind professional"},
		{[]string{"consent", "add", "--kind", "insurer", "a@b.example", "--evidence", "BAA"}, 2, "--kind is client (the default) or professional"},
		{[]string{"consent", "add", "--kind", "professional", "--evidence", "BAA"}, 2, "needs one ADDRESS, or --domain DOMAIN"},
		{[]string{"consent", "add", "anna@client.example", "--evidence", "intake form", "--date", "2026-01-05", "--by", "admin"}, 0, "may receive unencrypted email"},
		{[]string{"consent", "add", "--kind", "professional", "--domain", "Clinic.Example", "--name", "Clinic (referrals)", "--evidence", "BAA signed 2025-03-01", "--date", "2025-03-01"}, 0,
			"every address at clinic.example gets email in clear"},
		{[]string{"consent", "add", "--kind", "professional", "lee@doctors.example", "--name", "Dr. Lee", "--evidence", "referral letter"}, 0, "lee@doctors.example gets email in clear"},
	}
	for _, tt := range tests {
		stdout, stderr, code := run(tt.args...)
		if code != tt.code || !strings.Contains(stdout+stderr, tt.output) {
			t.Fatalf("%v: exit %d\n%s%s\nwant exit %d saying %q", tt.args, code, stdout, stderr, tt.code, tt.output)
		}
	}
	stdout, _, _ := run("consent", "list")
	clients, pros, _ := strings.Cut(stdout, "Professional recipients")
	if !strings.Contains(clients, "anna@client.example") || strings.Contains(clients, "clinic.example") || strings.Contains(clients, "lee@") ||
		!strings.Contains(pros, "@clinic.example (every address)") || !strings.Contains(pros, "Dr. Lee") || !strings.Contains(pros, "BAA signed 2025-03-01") {
		t.Errorf("consent list does not keep professionals apart:\n%s", stdout)
	}
	stdout, _, _ = run("consent", "list", "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(stdout), &list); err != nil || len(list) != 1 || list[0]["address"] != "anna@client.example" {
		t.Errorf("consent list --json counts more than the clients: %v\n%s", err, stdout)
	}
	stdout, _, _ = run("consent", "list", "--json", "--kind", "professional")
	if err := json.Unmarshal([]byte(stdout), &list); err != nil || len(list) != 2 || list[0]["domain"] != "clinic.example" || list[1]["address"] != "lee@doctors.example" {
		t.Errorf("consent list --json --kind professional: %v\n%s", err, stdout)
	}
	if stdout, stderr, code := run("consent", "revoke", "intake@clinic.example", "--reason", "left"); code != 0 || !strings.Contains(stdout, "intake@clinic.example is no longer a professional recipient") {
		t.Errorf("revoking one address of a professional domain: exit %d\n%s%s", code, stdout, stderr)
	}
	if stdout, stderr, code := run("consent", "revoke", "--domain", "clinic.example", "--reason", "BAA ended"); code != 0 || !strings.Contains(stdout, "every address at clinic.example") {
		t.Errorf("revoking the domain: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, _, _ = run("consent", "list", "--kind", "professional")
	if strings.Contains(stdout, "clinic.example") || !strings.Contains(stdout, "lee@doctors.example") {
		t.Errorf("after the withdrawals, active professionals:\n%s", stdout)
	}
	if stdout, _, _ := run("consent", "list", "--kind", "professional", "--all"); !strings.Contains(stdout, "revoked") || !strings.Contains(stdout, "intake@clinic.example") {
		t.Errorf("--all lacks the withdrawn:\n%s", stdout)
	}
}
