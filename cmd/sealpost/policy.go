package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/pgp"
)

// policyAndArchive are what the relay decides with and records into: the
// consent registry and the keyring, the policy built on them, the archive.
type policyAndArchive struct {
	policy   *rules.Policy
	registry *rules.Registry
	log      *slog.Logger // for what reload fetches
	keys     *pgp.Keyring
	arch     *archive.Archive
	closers  []func() error
}

// openPolicyAndArchive opens the registry, the keyring and the archive, and
// builds the policy.
func openPolicyAndArchive(ctx context.Context, cfg *config.Config, log *slog.Logger) (*policyAndArchive, error) {
	d := &policyAndArchive{}
	reg, err := openRegistry(cfg)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, reg.Close)
	d.registry = reg
	var wkd *pgp.WKDOptions
	if cfg.PGP.WKD {
		wkd = &pgp.WKDOptions{}
	}
	keys, err := openKeyring(cfg, pgp.KeyringOptions{WKD: wkd})
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
	sealed := cfg.Sealed.Settings()
	enc := pgp.NewEncrypter(keys, practice)
	var autocrypt rules.AutocryptSource
	if practice != nil {
		autocrypt = enc // offers the practice key on copies that leave the practice
	}
	d.policy, err = rules.NewPolicy(rules.PolicyConfig{
		InternalDomains: cfg.Policy.InternalDomains,
		Notice:          cfg.Policy.Notice,
		Rules:           cfg.Policy.ContentRules(),
		Registry:        reg,
		Keys:            keys,
		Encrypter:       enc,
		Sealed:          &sealed,
		Autocrypt:       autocrypt,
		Now:             clockNow,
	})
	if err != nil {
		d.close()
		return nil, err
	}
	d.log = log
	fetchCalendars(ctx, cfg, http.DefaultClient, log)
	d.policy.SetHours(cfg.OfficeHours())
	arch, warning, err := openArchive(ctx, cfg, log)
	if warning != "" {
		log.Warn(warning)
	}
	if err != nil {
		d.close()
		return nil, err
	}
	d.closers = append(d.closers, arch.Close)
	d.arch = arch
	if err := registryHoldsRecorded(ctx, reg, arch.LastConsentID(), cfg); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *policyAndArchive) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// reload gives the policy what may change while it runs.
func (d *policyAndArchive) reload(cfg *config.Config) error {
	if err := d.policy.SetSealed(cfg.Sealed.Settings()); err != nil {
		return err
	}
	fetchCalendars(context.Background(), cfg, http.DefaultClient, d.log)
	d.policy.SetHours(cfg.OfficeHours())
	return d.policy.Reload(cfg.Policy.InternalDomains, cfg.Policy.Notice, cfg.Policy.ContentRules())
}

// syncConsent copies consent events the archive does not have yet from the
// registry into it, so the registry's history is part of the record: a
// batch at a time (one fsync for each), until none are left or ctx ends.
func (d *policyAndArchive) syncConsent(ctx context.Context) error {
	var bulkDone func()
	defer func() {
		if bulkDone != nil {
			bulkDone()
		}
	}()
	for {
		evs, err := d.registry.EventsAfter(ctx, d.arch.LastConsentID(), consentBatch)
		if err != nil || len(evs) == 0 {
			return err
		}
		// A full batch is an import's worth, not a consent or two from the
		// console (the first may be fewer: an import still being written).
		if bulkDone == nil && len(evs) == consentBatch {
			bulkDone = duringBulkCopy()
		}
		if err := d.arch.RecordConsents(ctx, evs); err != nil {
			return err
		}
	}
}

// consentBatch is how many consent events are copied at once: the
// archive writes up to 512 records with one fsync.
const consentBatch = 500

// consentSyncLoop runs syncConsent at start and every few seconds: the CLI
// changes the registry while the relay runs.
func (d *policyAndArchive) consentSyncLoop(ctx context.Context, log *slog.Logger) {
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
