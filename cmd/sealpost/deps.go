package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/relay"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/pgp"
)

// serveDeps are the policy and the archive the relay is wired to.
type serveDeps struct {
	policy   relay.Rules
	rules    *rules.Policy // the same policy: what else asks it (internal domains)
	archive  relay.Archive
	arch     *archive.Archive
	registry *rules.Registry
	keys     *pgp.Keyring
	closers  []func() error
	reload   func(cfg *config.Config) error
}

func (d *serveDeps) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// openPolicyAndArchive opens the consent registry and builds the policy.
func openPolicyAndArchive(ctx context.Context, cfg *config.Config, log *slog.Logger) (*serveDeps, error) {
	d := &serveDeps{}
	reg, err := openRegistry(cfg)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, reg.Close)
	var wkd *pgp.WKDOptions
	if cfg.PGP.WKD {
		wkd = &pgp.WKDOptions{}
	}
	keys, err := pgp.OpenKeyring(cfg.KeyringPath(), pgp.KeyringOptions{WKD: wkd})
	if err != nil {
		d.close()
		return nil, err
	}
	d.closers = append(d.closers, keys.Close)
	d.keys = keys
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
		Rules:           cfg.Policy.ContentRules(),
		Registry:        reg,
		Keys:            keys,
		Encrypter:       pgp.NewEncrypter(keys, practice),
	})
	if err != nil {
		d.close()
		return nil, err
	}
	d.policy, d.rules = policy, policy
	d.reload = func(c *config.Config) error {
		return policy.Reload(c.Policy.InternalDomains, c.Policy.Notice, c.Policy.ContentRules())
	}

	arch, warning, err := openArchive(cfg, log)
	if warning != "" {
		log.Warn(warning)
	}
	if err != nil {
		d.close()
		return nil, err
	}
	d.archive, d.arch = arch, arch
	d.closers = append(d.closers, arch.Close)
	d.registry = reg
	return d, nil
}

// syncConsent copies consent events the archive does not have yet from the
// registry into it, so the registry's history is part of the record.
func (d *serveDeps) syncConsent(ctx context.Context) error {
	evs, err := d.registry.EventsSince(ctx, d.arch.LastConsentID())
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if err := d.arch.RecordConsent(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// consentSyncLoop runs syncConsent at start and every few seconds: the CLI
// changes the registry while the relay runs.
func (d *serveDeps) consentSyncLoop(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		if err := d.syncConsent(ctx); err != nil && ctx.Err() == nil {
			log.Error("cannot copy consent events into the archive; will try again", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
