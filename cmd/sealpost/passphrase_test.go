package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/sealed"
)

// sealedConfig is the [sealed] section the card takes the practice's name
// and crisis text from.
const sealedConfig = `[sealed]
practice_name = "Lakeside Counselling"
crisis = "In a crisis call 988."
`

// step is one command of a scenario.
type step struct {
	stdin  string
	args   []string
	code   int
	stdout []string // each must be in stdout
	stderr []string // each must be in stderr
}

// storedPassphrase is what the registry holds for an address ("" for none).
func storedPassphrase(t *testing.T, cfgPath, address string) string {
	t.Helper()
	reg, err := rules.OpenRegistry(filepath.Join(filepath.Dir(cfgPath), "data", "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	secret, set, err := reg.Passphrase(context.Background(), address)
	if err != nil {
		t.Fatal(err)
	}
	if (set == nil) != (secret == "") {
		t.Fatalf("registry for %s: secret %t but event %v", address, secret != "", set)
	}
	return secret
}

// listed runs `consent list --all --json` and returns the entries by address.
func listed(t *testing.T, cfgPath string) (map[string]map[string]any, string) {
	t.Helper()
	stdout, stderr, code := runCLI(t, "", "consent", "list", "--all", "--json", "-c", cfgPath)
	if code != 0 {
		t.Fatalf("consent list --all --json: exit %d %s", code, stderr)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(stdout), &list); err != nil {
		t.Fatalf("consent list --json: %v\n%s", err, stdout)
	}
	byAddr := map[string]map[string]any{}
	for _, e := range list {
		byAddr[e["address"].(string)] = e
	}
	return byAddr, stdout
}

func TestConsentPassphrase(t *testing.T) {
	const (
		anna   = "anna@client.example"
		secret = "river maple lantern quiet"
		other  = "copper field window seven"
		weak   = "tiny-pw"
	)
	today := time.Now().Format("2006-01-02")
	addAnna := step{args: []string{"consent", "add", anna, "--evidence", "form 3", "--date", "2026-01-05", "--name", "Chart 17"}, stdout: []string{"Recorded consent"}}
	setAnna := step{stdin: secret + "\n", args: []string{"consent", "passphrase", anna, "--by", "admin"}, stdout: []string{"Passphrase set (#"}}
	tests := []struct {
		name    string
		steps   []step
		secrets []string // never in any output, nor in the listings
		check   func(t *testing.T, cfg string, out string)
	}{
		{"from stdin, by address", []step{
			{stdin: secret + "\r\n", args: []string{"consent", "passphrase", anna, "--by", "admin"},
				stdout: []string{"Passphrase set (#1) for " + anna + " by admin: messages to them go as a sealed PDF"}},
			{args: []string{"consent", "list"}, stdout: []string{anna, "yes, set " + today}},
		}, []string{secret}, func(t *testing.T, cfg, _ string) {
			if got := storedPassphrase(t, cfg, anna); got != secret {
				t.Errorf("stored %q, want the line without its line end", got)
			}
			list, _ := listed(t, cfg)
			if e := list[anna]; e["sealed"] != true || e["passphrase_set"] == nil {
				t.Errorf("--json entry %v: want sealed and passphrase_set", e)
			}
		}},
		{"by name: every address of the client", []step{
			addAnna,
			{args: []string{"consent", "add", "anna.home@client.example", "--evidence", "form 3", "--date", "2026-01-05", "--name", "Chart 17"}},
			{stdin: secret + "\n", args: []string{"consent", "passphrase", "Chart 17"},
				stdout: []string{"anna.home@client.example, " + anna}},
		}, []string{secret}, func(t *testing.T, cfg, _ string) {
			for _, a := range []string{anna, "anna.home@client.example"} {
				if got := storedPassphrase(t, cfg, a); got != secret {
					t.Errorf("%s: stored %q", a, got)
				}
			}
		}},
		{"the invoking user through sudo", []step{
			{stdin: secret + "\n", args: []string{"consent", "passphrase", anna}, stdout: []string{" by maria:"}},
		}, []string{secret}, nil},
		{"an unknown name", []step{
			addAnna,
			{stdin: secret + "\n", args: []string{"consent", "passphrase", "Chart 99"}, code: 1, stderr: []string{`no client "Chart 99"`}},
		}, []string{secret}, nil},
		{"too short", []step{
			{stdin: weak + "\n", args: []string{"consent", "passphrase", anna}, code: 1, stderr: []string{"shorter than 12 characters", "nothing was changed"}},
		}, []string{weak}, func(t *testing.T, cfg, _ string) {
			if got := storedPassphrase(t, cfg, anna); got != "" {
				t.Error("a refused passphrase was stored")
			}
		}},
		{"too long", []step{
			{stdin: strings.Repeat("long words ", 20) + "\n", args: []string{"consent", "passphrase", anna}, code: 1, stderr: []string{"longer than 127 bytes", "nothing was changed"}},
		}, nil, nil},
		{"nothing on stdin", []step{
			{args: []string{"consent", "passphrase", anna}, code: 1, stderr: []string{"no passphrase on stdin", "--generate"}},
		}, nil, nil},
		{"--remove with --generate", []step{
			{args: []string{"consent", "passphrase", anna, "--remove", "--generate"}, code: 2, stderr: []string{"--remove takes neither"}},
		}, nil, nil},
		{"--name with a name", []step{
			{args: []string{"consent", "passphrase", "Chart 17", "--name", "Anna"}, code: 2, stderr: []string{"--name goes with an ADDRESS"}},
		}, nil, nil},
		{"replaced", []step{
			setAnna,
			{stdin: other + "\n", args: []string{"consent", "passphrase", anna}, stdout: []string{"Passphrase replaced (#2)", "sealed with the old passphrase are not sent"}},
		}, []string{secret, other}, func(t *testing.T, cfg, _ string) {
			if got := storedPassphrase(t, cfg, anna); got != other {
				t.Errorf("stored %q, want the new one", got)
			}
		}},
		{"removed, consent left", []step{
			addAnna, setAnna,
			{args: []string{"consent", "passphrase", anna, "--remove"}, stdout: []string{"Passphrase removed (#3) for " + anna, "they get email in clear (consent #1)"}},
			{args: []string{"consent", "list"}, stdout: []string{anna}},
		}, []string{secret}, func(t *testing.T, cfg, out string) {
			if got := storedPassphrase(t, cfg, anna); got != "" {
				t.Error("the secret is still stored after --remove")
			}
			if strings.Contains(out, "yes, set") {
				t.Errorf("listed as sealed after --remove:\n%s", out)
			}
		}},
		{"removed, nothing left", []step{
			setAnna,
			{args: []string{"consent", "passphrase", anna, "--remove"}, stdout: []string{"Passphrase removed", "refused unless they have a usable key or consent"}},
			{args: []string{"consent", "list"}, stdout: []string{"No consents or passphrases on file."}},
		}, []string{secret}, nil},
		{"the client prefers clear email", []step{
			{args: []string{"consent", "add", anna, "--evidence", "form 3", "--date", "2026-01-05", "--prefer", "clear"}, stdout: []string{"prefers clear email"}},
			{stdin: secret + "\n", args: []string{"consent", "passphrase", anna}, stdout: []string{"Passphrase set", "asked for clear email (consent #1, --prefer clear)"}},
			{args: []string{"consent", "list"}, stdout: []string{"no: prefers clear (passphrase set " + today + ")"}},
		}, []string{secret}, func(t *testing.T, cfg, _ string) {
			list, _ := listed(t, cfg)
			if e := list[anna]; e["sealed"] != false || e["prefer"] != "clear" {
				t.Errorf("--json entry %v: want sealed false, prefer clear", e)
			}
		}},
		{"a client never held for office hours", []step{
			{args: []string{"consent", "add", anna, "--evidence", "form 3", "--date", "2026-01-05", "--no-hold"}},
			{args: []string{"consent", "list"}, stdout: []string{"active, never held"}},
		}, nil, func(t *testing.T, cfg, _ string) {
			list, _ := listed(t, cfg)
			if e := list[anna]; e["no_hold"] != true {
				t.Errorf("--json entry %v: want no_hold true", e)
			}
		}},
		{"--prefer something else", []step{
			{args: []string{"consent", "add", anna, "--evidence", "form 3", "--prefer", "paper"}, code: 2, stderr: []string{`--prefer takes only "clear"`}},
		}, nil, nil},
		{"a card where none can be written", []step{
			{stdin: secret + "\n", args: []string{"consent", "passphrase", anna, "--card", "/nonexistent/card.pdf"}, code: 1, stderr: []string{"card: ", "/nonexistent"}},
		}, []string{secret}, func(t *testing.T, cfg, _ string) {
			if got := storedPassphrase(t, cfg, anna); got != "" {
				t.Error("the passphrase was set although its card could not be written")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SUDO_USER", "maria")
			cfg := writeConfig(t, sealedConfig)
			var all strings.Builder
			for _, s := range tt.steps {
				stdout, stderr, code := runCLI(t, s.stdin, append(s.args, "-c", cfg)...)
				if code != s.code {
					t.Fatalf("%v: exit %d, want %d\n%s%s", s.args, code, s.code, stdout, stderr)
				}
				for _, w := range s.stdout {
					if !strings.Contains(stdout, w) {
						t.Errorf("%v: stdout lacks %q:\n%s", s.args, w, stdout)
					}
				}
				for _, w := range s.stderr {
					if !strings.Contains(stderr, w) {
						t.Errorf("%v: stderr lacks %q:\n%s", s.args, w, stderr)
					}
				}
				all.WriteString(stdout + stderr)
			}
			_, js := listed(t, cfg)
			for _, secret := range tt.secrets {
				if strings.Contains(all.String(), secret) || strings.Contains(js, secret) {
					t.Errorf("the passphrase %q was printed:\n%s%s", secret, all.String(), js)
				}
			}
			if tt.check != nil {
				tt.check(t, cfg, all.String())
			}
		})
	}
}

// TestConsentPassphraseGenerate: --generate prints the passphrase once,
// says it will not be shown again, and the registry holds exactly that;
// the card shows it with the practice's name.
func TestConsentPassphraseGenerate(t *testing.T) {
	cfg := writeConfig(t, sealedConfig)
	card := filepath.Join(t.TempDir(), "anna-card.pdf")
	stdout, stderr, code := runCLI(t, "", "consent", "passphrase", "anna@client.example", "--generate", "--card", card, "--name", "Anna K.", "-c", cfg)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	var generated string
	for _, line := range strings.Split(stdout, "\n") {
		if p, ok := strings.CutPrefix(line, "Passphrase: "); ok {
			generated = p
		}
	}
	if words := strings.Fields(generated); len(words) != 6 {
		t.Fatalf("want six words on a line \"Passphrase: ...\":\n%s", stdout)
	}
	if strings.Count(stdout, generated) != 1 || !strings.Contains(stdout, "It will not be shown again") || !strings.Contains(stdout, "Card written to "+card) {
		t.Errorf("want the passphrase once, that it will not be shown again, and the card's file:\n%s", stdout)
	}
	if _, err := sealed.CheckPassphrase(generated); err != nil {
		t.Errorf("the generated passphrase fails its own check: %v", err)
	}
	if got := storedPassphrase(t, cfg, "anna@client.example"); got != generated {
		t.Errorf("registry holds %q, printed %q", got, generated)
	}
	if list, js := listed(t, cfg); strings.Contains(js, generated) || list["anna@client.example"]["sealed"] != true {
		t.Errorf("listing shows the passphrase, or not sealed:\n%s", js)
	}
	again, _, _ := runCLI(t, "", "consent", "passphrase", "bob@client.example", "--generate", "-c", cfg)
	if strings.Contains(again, generated) {
		t.Errorf("two runs of --generate made the same passphrase %q", generated)
	}

	fi, err := os.Stat(card)
	if err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("card: %v, want a non-empty file readable by its owner only (%v)", err, fi)
	}
	if b, _ := os.ReadFile(card); !strings.HasPrefix(string(b), "%PDF-") {
		t.Fatalf("the card is not a PDF: %.40q", b)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(card), ".sealpost-card-*")); len(leftovers) > 0 {
		t.Errorf("temporary files left beside the card: %v", leftovers)
	}
	testutil.RequireTools(t, "pdftotext")
	out, err := exec.Command("pdftotext", "-layout", card, "-").Output()
	if err != nil {
		t.Fatalf("pdftotext: %v", err)
	}
	text := strings.Join(strings.Fields(string(out)), " ")
	for _, want := range []string{generated, "Lakeside Counselling", "Anna K.", "In a crisis call 988."} {
		if !strings.Contains(text, want) {
			t.Errorf("the card's text lacks %q:\n%s", want, out)
		}
	}
}

// TestConsentImportPassphrases: the CSV's optional passphrase column sets
// passphrases; a weak one stops the whole import and is not printed.
func TestConsentImportPassphrases(t *testing.T) {
	const good, weak = "harbor lamp quiet blue", "short-1"
	tests := []struct {
		name   string
		csv    string
		code   int
		stdout []string
		stderr []string
		stored map[string]string
	}{
		{"a passphrase column", "address,name,signed,evidence,expires,passphrase\nbob@client.example,Bob,2026-02-01,form,,\"" + good + "\"\ncarl@client.example,Carl,2026-02-01,form,,\n",
			0, []string{"Imported 2", "holds clients' passphrases: delete it"}, nil,
			map[string]string{"bob@client.example": good, "carl@client.example": ""}},
		{"a weak passphrase", "address,name,signed,evidence,expires,passphrase\nbob@client.example,Bob,2026-02-01,form,," + weak + "\n",
			1, nil, []string{"line 2", "nothing was imported"},
			map[string]string{"bob@client.example": ""}},
		{"no passphrase column", "address,name,signed,evidence,expires\nbob@client.example,Bob,2026-02-01,form,\n",
			0, []string{"Imported 1"}, nil, map[string]string{"bob@client.example": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeConfig(t, "")
			file := filepath.Join(t.TempDir(), "clients.csv")
			os.WriteFile(file, []byte(tt.csv), 0o600)
			stdout, stderr, code := runCLI(t, "", "consent", "import", file, "-c", cfg)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, stdout, stderr)
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if tt.code == 0 && strings.Contains(stdout, "holds clients' passphrases") != strings.Contains(tt.csv, "passphrase") {
				t.Errorf("the reminder to delete the file is wrong:\n%s", stdout)
			}
			_, js := listed(t, cfg)
			for _, s := range []string{good, weak} {
				if strings.Contains(stdout+stderr+js, s) {
					t.Errorf("a passphrase from the file was printed:\n%s%s%s", stdout, stderr, js)
				}
			}
			for a, want := range tt.stored {
				if got := storedPassphrase(t, cfg, a); got != want {
					t.Errorf("%s: stored %q, want %q", a, got, want)
				}
			}
		})
	}
}
