package rules

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/sealpost/sealpost/internal/addr"
)

// ContentRule is one [[policy.rule]]: a regular expression on the subject
// or body text of copies that would go out in clear to a client.
type ContentRule struct {
	Name    string
	Pattern string
	On      string // "subject", "body" or "any" (default)
	Action  string // "refuse" or "require_encryption"
	Reply   string // what the therapist reads; a default is made when empty
}

// policySettings are the settings a Policy may replace while it runs.
type policySettings struct {
	internal  map[string]bool
	notice    *noticeText
	noticeRaw string // as configured, for the sealed PDF's page
	rules     []compiledRule
}

type compiledRule struct {
	ContentRule
	re *regexp.Regexp
}

// SettingProblem is one thing wrong with the policy's settings. Key is
// where it is, as the configuration's [policy] section spells it:
// "internal_domains", "notice" or "rule[2].pattern".
type SettingProblem struct {
	Key string
	Msg string
}

func (p SettingProblem) String() string { return p.Key + ": " + p.Msg }

// CheckSettings returns every problem in the internal domains, the notice
// and the content rules, so that the configuration can name each one with
// its key and line. Reload refuses the same settings.
func CheckSettings(internalDomains []string, notice string, rules []ContentRule) []SettingProblem {
	_, problems := newPolicySettings(internalDomains, notice, rules)
	return problems
}

// newPolicySettings normalises the internal domains with internal/addr (as
// isInternal compares them) and compiles the content rules.
func newPolicySettings(internalDomains []string, notice string, rules []ContentRule) (*policySettings, []SettingProblem) {
	var problems []SettingProblem
	bad := func(key, format string, args ...any) {
		problems = append(problems, SettingProblem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	s := &policySettings{internal: map[string]bool{}, noticeRaw: strings.TrimSpace(notice)}
	for i, d := range internalDomains {
		n, err := addr.Domain(d)
		if err != nil {
			bad("internal_domains", "entry %d: %v", i+1, err)
			continue
		}
		s.internal[n] = true
	}
	if strings.TrimSpace(notice) == "" {
		bad("notice", "must hold the practice's confidentiality notice; every outgoing message carries it")
	} else {
		s.notice = newNoticeText(notice)
	}
	names := map[string]bool{}
	for i, r := range rules {
		k := fmt.Sprintf("rule[%d]", i)
		if r.Name == "" {
			bad(k+".name", "must be set")
		} else if names[r.Name] {
			bad(k+".name", "%q is used by two rules", r.Name)
		}
		names[r.Name] = true
		re, err := regexp.Compile(r.Pattern)
		switch {
		case err != nil:
			bad(k+".pattern", "must be a regular expression: %v", err)
		case r.Pattern == "":
			bad(k+".pattern", "must be a regular expression: it is empty")
		}
		switch r.On {
		case "":
			r.On = "any"
		case "subject", "body", "any":
		default:
			bad(k+".on", "must be subject, body or any, not %q", r.On)
		}
		switch r.Action {
		case "refuse", "require_encryption":
		default:
			bad(k+".action", "must be refuse or require_encryption, not %q", r.Action)
		}
		s.rules = append(s.rules, compiledRule{ContentRule: r, re: re})
	}
	return s, problems
}
