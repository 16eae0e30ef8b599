package main

import (
	"context"
	"log/slog"

	"github.com/sealpost/sealpost/relay"
	"github.com/sealpost/sealpost/rules"
)

// serveDeps are the policy and the archive the relay is wired to.
type serveDeps struct {
	policy  relay.Policy
	archive relay.Recorder
	closers []func() error
	reload  func(cfg *Config) error
}

func (d *serveDeps) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

func contentRules(cfg *Config) []rules.ContentRule {
	var out []rules.ContentRule
	for _, r := range cfg.Policy.Rules {
		out = append(out, rules.ContentRule{Name: r.Name, Pattern: r.Pattern, On: r.On, Action: r.Action, Reply: r.Reply})
	}
	return out
}

// openPolicyAndArchive opens the consent registry and builds the policy.
func openPolicyAndArchive(ctx context.Context, cfg *Config, log *slog.Logger) (*serveDeps, error) {
	d := &serveDeps{}
	reg, err := openRegistry(cfg)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, reg.Close)
	policy, err := rules.NewPolicy(rules.PolicyConfig{
		InternalDomains: cfg.Policy.InternalDomains,
		Notice:          cfg.Policy.Notice,
		Rules:           contentRules(cfg),
		Registry:        reg,
	})
	if err != nil {
		d.close()
		return nil, err
	}
	d.policy = policy
	d.reload = func(c *Config) error {
		return policy.Reload(c.Policy.InternalDomains, c.Policy.Notice, contentRules(c))
	}
	return d, nil
}
