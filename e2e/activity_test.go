package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/internal/testutil/browsertest"
)

// exportedActivity is an activity record as an export's manifest.json
// lists it.
type exportedActivity struct {
	Who, Role, What, Object, From string
	Addresses                     []string
}

func exportActivity(t *testing.T, r *Relay, args ...string) []exportedActivity {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export")
	args = append([]string{"archive", "export", "--key", filepath.Join(r.DataDir, "archive-private-key.asc"), "--out", out}, args...)
	if stdout, stderr, code := r.Run(t, "", args...); code != 0 {
		t.Fatalf("archive export: exit %d\n%s%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Activity []exportedActivity }
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m.Activity
}

// TestCommandsInActivityLog: an admin's commands on the server, run
// against the running relay (consents with --no-hold and --by, an import,
// a revocation, a passphrase, a professional domain, an absence and its
// cancellation, a queued message retried and another dropped), each appear
// on the auditor's Activity page with who ran them and "command on the
// server", and in an export's activity records; a client's export holds
// those naming the client. No client address is on the page. With the
// relay stopped, queue retry --all and drop record themselves.
func TestCommandsInActivityLog(t *testing.T) {
	testutil.RequireTools(t, "swaks", "chromium")
	sink := StartSink(t)
	r, url := startConsoleRelay(t, RelayOptions{Sink: sink, RetryMin: "1h", RetryMax: "2h", Lifetime: "5h"})
	sink.Stop()
	for _, subject := range []string{"Rota", "Wrong draft"} {
		if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--header", "Subject: "+subject)...); !ok {
			t.Fatalf("swaks:\n%s", out)
		}
	}
	var queued []struct{ ID string }
	testutil.WaitFor(t, "both delivery attempts to fail", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list", "--json")
		return strings.Count(out, `"attempts": 1`) == 2 && json.Unmarshal([]byte(out), &queued) == nil
	})

	// The person behind sudo is who a command's change is recorded as.
	t.Setenv("SUDO_USER", "alice")
	csv := filepath.Join(t.TempDir(), "intake.csv")
	os.WriteFile(csv, []byte("address,name,signed,evidence,expires\ndora@client.example,Dora,2026-02-01,form v3,\n"), 0o600)
	commands := []struct {
		stdin string
		args  []string
	}{
		{"", []string{"consent", "add", "anna@client.example", "--evidence", "treatment plan", "--no-hold", "--by", "Dr. Berg"}},
		{"", []string{"consent", "import", csv}},
		{"", []string{"consent", "revoke", "dora@client.example", "--reason", "asked by phone"}},
		{"correct horse battery staple\n", []string{"consent", "passphrase", "bea@client.example"}},
		{"", []string{"consent", "add", "--kind", "professional", "--domain", "clinic.example", "--evidence", "BAA 2026"}},
		{"", []string{"away", "--account", User, "--from", "2026-12-24", "--until", "2027-01-02"}},
		{"", []string{"away", "cancel", "1", "--account", User}},
		{"", []string{"queue", "retry", queued[0].ID}},
		{"", []string{"queue", "drop", queued[1].ID}},
	}
	for _, c := range commands {
		if out, errOut, code := r.Run(t, c.stdin, c.args...); code != 0 || errOut != "" {
			t.Fatalf("%s: exit %d\n%s%s", strings.Join(c.args, " "), code, out, errOut)
		}
	}
	want := []struct{ words, what, who, object string }{
		{"never held outside office hours", "consent-recorded-no-hold", "alice, as Dr. Berg", ""},
		{"imported clients' consents from a file", "consents-imported", "alice", "1 consents"},
		{"withdrew consent", "consent-revoked", "alice", ""},
		{"recorded a client's passphrase", "passphrase-set", "alice", ""},
		{"recorded a professional recipient", "professional-recorded", "alice", ""},
		{"recorded a therapist's absence", "absence-added", "alice", "1 (" + User + ", 2026-12-24 to 2027-01-02)"},
		{"cancelled a therapist's absence", "absence-cancelled", "alice", "1 (" + User + ", 2026-12-24 to 2027-01-02)"},
		{"tried a queued message again", "queue-retry", "alice", queued[0].ID},
		{"dropped a queued message", "queue-drop", "alice", queued[1].ID},
	}

	ctx := consoleBrowser(t)
	consoleLogIn(t, ctx, url, consoleAuditor)
	browsertest.Open(t, ctx, url+"/activity?days=1", "main h1")
	text := browsertest.Text(t, ctx)
	for _, w := range want {
		if !strings.Contains(text, w.words) {
			t.Errorf("the Activity page lacks %q", w.words)
		}
	}
	if !strings.Contains(text, "alice, as Dr. Berg") || strings.Count(text, "command on the server") < len(want) ||
		strings.Contains(text, "@client.example") {
		t.Errorf("the Activity page:\n%s", text)
	}
	browsertest.Axe(t, ctx, "the activity log")
	browsertest.Screenshot(t, ctx, browsertest.ShotDir(t), "e2e-console-auditor-activity")

	all := exportActivity(t, r)
	for _, w := range want {
		i := slices.IndexFunc(all, func(a exportedActivity) bool { return a.What == w.what })
		if i < 0 {
			t.Errorf("the export has no %s record: %+v", w.what, all)
			continue
		}
		a := all[i]
		if a.Who != w.who || a.Role != "command" || a.From != "command on the server" || w.object != "" && a.Object != w.object {
			t.Errorf("exported %+v; want by %q, object %q", a, w.who, w.object)
		}
	}
	anna := exportActivity(t, r, "--client", "anna@client.example")
	if len(anna) != 1 || anna[0].What != "consent-recorded-no-hold" || !slices.Equal(anna[0].Addresses, []string{"anna@client.example"}) {
		t.Errorf("anna's export holds the activity %+v; want her consent alone", anna)
	}

	// With the relay stopped the commands write their records themselves.
	r.Stop(t)
	for _, args := range [][]string{{"queue", "retry", "--all"}, {"queue", "drop", queued[0].ID}} {
		if out, errOut, code := r.Run(t, "", args...); code != 0 || errOut != "" {
			t.Fatalf("%s with no relay: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	all = exportActivity(t, r)
	var offline []string
	for _, a := range all[len(all)-2:] {
		offline = append(offline, a.What+" "+a.Object+" "+a.Who)
	}
	if want := []string{"queue-retry " + queued[0].ID + " alice", "queue-drop " + queued[0].ID + " alice"}; !slices.Equal(offline, want) {
		t.Errorf("the newest activity records %q, want %q", offline, want)
	}
}
