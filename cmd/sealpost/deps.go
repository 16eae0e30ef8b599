package main

import (
	"context"
	"log/slog"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/relay"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/pgp"
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
	keys, err := openKeyring(cfg)
	if err != nil {
		d.close()
		return nil, err
	}
	d.closers = append(d.closers, keys.Close)
	var practice *openpgp.Entity
	if cfg.PGP.PracticeKey != "" {
		if practice, err = pgp.LoadPracticeKey(cfg.PGP.PracticeKey, cfg.PGP.PracticeKeyPassphraseFile); err != nil {
			d.close()
			return nil, err
		}
		log.Info("encrypted copies are signed with the practice key", "fingerprint", pgp.Fingerprint(practice))
	} else {
		log.Warn("no pgp.practice_key: encrypted copies are neither signed nor readable by the practice")
	}
	policy, err := rules.NewPolicy(rules.PolicyConfig{
		InternalDomains: cfg.Policy.InternalDomains,
		Notice:          cfg.Policy.Notice,
		Rules:           contentRules(cfg),
		Registry:        reg,
		Keys:            keys,
		Encrypter:       pgp.NewEncrypter(keys, practice),
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
