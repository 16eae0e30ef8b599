package rules

import (
	"strings"
	"testing"
)

// TestCheckSettings: every problem in the internal domains, the notice and
// the content rules is named with its key, and Reload refuses the same
// settings, keeping those it had.
func TestCheckSettings(t *testing.T) {
	ok := ContentRule{Name: "us-ssn", Pattern: ssnPattern, Action: "refuse"}
	if p := CheckSettings([]string{"practice.example", "Bücher.example"}, "Notice.", []ContentRule{ok}); len(p) != 0 {
		t.Fatalf("good settings: %v", p)
	}
	problems := CheckSettings([]string{"practice.example", "not a domain"}, " \n", []ContentRule{
		ok,
		{Name: "us-ssn", Pattern: "(", On: "header", Action: "drop"},
		{Pattern: ""},
	})
	want := []string{
		"internal_domains: entry 2:",
		"notice: must hold the practice's confidentiality notice",
		`rule[1].name: "us-ssn" is used by two rules`,
		"rule[1].pattern: must be a regular expression: error parsing regexp",
		`rule[1].on: must be subject, body or any, not "header"`,
		`rule[1].action: must be refuse or require_encryption, not "drop"`,
		"rule[2].name: must be set",
		"rule[2].pattern: must be a regular expression: it is empty",
		`rule[2].action: must be refuse or require_encryption, not ""`,
	}
	if len(problems) != len(want) {
		t.Errorf("%d problems, want %d: %v", len(problems), len(want), problems)
	}
	for i, w := range want {
		if i < len(problems) && !strings.HasPrefix(problems[i].String(), w) {
			t.Errorf("problem %d: %q, want %q...", i, problems[i], w)
		}
	}

	tp := newTestPolicy(t, ok)
	if err := tp.Reload([]string{"practice.example"}, "Notice.", []ContentRule{{Name: "x", Pattern: "a", On: "header", Action: "refuse"}}); err == nil ||
		err.Error() != `policy: rule[0].on: must be subject, body or any, not "header"` {
		t.Errorf("Reload with a bad rule: %v", err)
	}
	if !tp.isInternal("anna@practice.example") || len(tp.cfg.Load().rules) != 1 || tp.cfg.Load().rules[0].Name != "us-ssn" {
		t.Error("a refused Reload changed the settings")
	}
}
