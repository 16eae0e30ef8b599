package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/archive/ingest"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/oauth"
	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/relay"
	"github.com/sealpost/sealpost/rules/pgp"
)

func init() {
	register(&command{
		name:    "check",
		args:    "[-c FILE] [--offline]",
		summary: "validate the configuration, certificates, keys and secret files; log in to the provider unless --offline",
		run:     runCheck,
	})
}

func runCheck(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	offline := fs.Bool("offline", false, "do not connect to the provider")
	_, cfg, err := c.start(fs, args, noArgs)
	if err != nil {
		var ces config.Errors
		if errors.As(err, &ces) {
			for _, e := range ces {
				fmt.Fprintf(c.stdout, "FAIL %s\n", e.Error())
			}
			return fmt.Errorf("%d problem(s) in %s", len(ces), c.configPath)
		}
		return err
	}
	failed := 0
	report := func(what string, err error) {
		if err != nil {
			failed++
			fmt.Fprintf(c.stdout, "FAIL %s: %s\n", what, textutil.OneLine(err.Error()))
			return
		}
		fmt.Fprintf(c.stdout, "ok   %s\n", what)
	}
	report(fmt.Sprintf("configuration %s (%d accounts)", cfg.Path, len(cfg.Accounts)), nil)
	report("data_dir "+cfg.DataDir+" is writable", checkWritableDir(cfg.DataDir))
	if cfg.SMTP.TLSCert != "" {
		_, err := tls.LoadX509KeyPair(cfg.SMTP.TLSCert, cfg.SMTP.TLSKey)
		report(fmt.Sprintf("smtp.tls_cert %s and tls_key %s (line %d)", cfg.SMTP.TLSCert, cfg.SMTP.TLSKey, cfg.Line("smtp.tls_cert")), err)
	} else {
		report("smtp.tls_cert empty: sealpost makes a local CA and certificate in "+cfg.TLSDir(), nil)
	}
	up, err := upstreamConfig(cfg)
	if cfg.Upstream.CAFile != "" {
		report(fmt.Sprintf("upstream.ca_file %s (line %d)", cfg.Upstream.CAFile, cfg.Line("upstream.ca_file")), err)
	}
	// What the grants' refreshes have to say goes to stderr beside the report.
	log := slog.New(slog.NewTextHandler(c.stderr, nil))
	grants := oauth.NewGrants(log)
	accounts, accErr := relayAccounts(cfg, grants)
	for i, a := range cfg.Accounts {
		if a.UpstreamPasswordFile != "" {
			_, err := config.ReadSecret(a.UpstreamPasswordFile)
			report(fmt.Sprintf("account[%d].upstream_password_file %s (line %d)", i, a.UpstreamPasswordFile, cfg.Line(fmt.Sprintf("account[%d].upstream_password_file", i))), err)
		}
		if a.UpstreamAuth == "oauth2" {
			_, err := oauthGrant(cfg, grants, a.Username)
			report(fmt.Sprintf("account[%d] OAuth 2.0 grant %s", i, oauth.GrantPath(cfg.DataDir, a.Username)), err)
		}
	}
	for _, f := range []struct{ key, path string }{
		{"pgp.practice_key", cfg.PGP.PracticeKey},
		{"pgp.practice_key_passphrase_file", cfg.PGP.PracticeKeyPassphraseFile},
		{"archive.public_key", cfg.Archive.PublicKey},
	} {
		if f.path != "" {
			report(fmt.Sprintf("%s %s (line %d)", f.key, f.path, cfg.Line(f.key)), checkReadable(f.path))
		}
	}
	extras := append(checkPolicyAndArchive(cfg), checkDataDirAccess(c, cfg)...)
	extras = append(extras, checkOfficeHours(cfg, clockNow())...)
	extras = append(extras, checkOffsite(ctx, cfg, *offline)...)
	for _, extra := range append(extras, checkCertificateEnds(cfg, time.Now())...) {
		if extra.warn {
			fmt.Fprintf(c.stdout, "WARN %s: %s\n", extra.what, textutil.OneLine(extra.err.Error()))
			continue
		}
		report(extra.what, extra.err)
	}
	switch {
	case cfg.Upstream.Address == "outbox":
		report("upstream is the outbox Maildir "+cfg.OutboxDir()+": nothing leaves this machine", nil)
	case *offline:
		fmt.Fprintf(c.stdout, "skip login to the provider %s (--offline)\n", cfg.Upstream.Address)
	case err != nil || accErr != nil:
		// already reported
	default:
		for _, a := range accounts {
			lctx, cancel := context.WithTimeout(ctx, cfg.Upstream.Timeout.D())
			err := relay.CheckUpstream(lctx, up, a, cfg.SMTP.Hostname)
			cancel()
			who := a.UpstreamUsername
			if who == "" {
				who = "(no login: tls = none)"
			}
			report(fmt.Sprintf("login to %s over %s as %s", cfg.Upstream.Address, cfg.Upstream.TLS, who), err)
		}
	}
	for _, a := range cfg.Accounts {
		if a.IMAP == nil {
			continue
		}
		what := fmt.Sprintf("IMAP login to %s as %s, folders %s (read only)", a.IMAP.Address, a.IMAP.Username, strings.Join(a.IMAP.Folders, ", "))
		o, err := imapOptions(cfg, a, grants) // reads the password file or grant
		if *offline && err == nil {
			fmt.Fprintf(c.stdout, "skip %s (--offline)\n", what)
			continue
		}
		if err == nil {
			lctx, cancel := context.WithTimeout(ctx, time.Minute)
			err = ingest.CheckLogin(lctx, o)
			cancel()
		}
		report(what, err)
	}
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed", failed)
	}
	fmt.Fprintln(c.stdout, "All checks passed.")
	return nil
}

func checkWritableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".check-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Read(make([]byte, 1))
	return err
}

type checkResult struct {
	what string
	err  error
	warn bool // worth fixing before real use, but sealpost runs
}

// checkPolicyAndArchive opens the registry and the keyring and unlocks the
// practice key, as serve will.
func checkPolicyAndArchive(cfg *config.Config) []checkResult {
	var out []checkResult
	if _, err := os.Stat(cfg.DataDir); err == nil {
		reg, err := openRegistryStore(cfg)
		if err == nil {
			err = reg.CheckPassphraseKey(context.Background())
			reg.Close()
		}
		out = append(out, checkResult{what: "consent registry " + storeWhere(cfg, cfg.RegistryPath()) + " and the passphrases on file", err: err})
		k, err := openKeyring(cfg, pgp.KeyringOptions{})
		if err == nil {
			k.Close()
		}
		out = append(out, checkResult{what: "keyring " + storeWhere(cfg, cfg.KeyringPath()), err: err})
	}
	if cfg.Archive.PublicKey != "" {
		_, _, err := archive.EnsureKey(cfg.DataDir, cfg.Archive.PublicKey)
		out = append(out, checkResult{what: fmt.Sprintf("archive.public_key %s (line %d) can encrypt", cfg.Archive.PublicKey, cfg.Line("archive.public_key")), err: err})
	} else if _, err := os.Stat(filepath.Join(cfg.DataDir, archive.PrivateKeyFile)); err == nil {
		out = append(out, checkResult{what: "archive.public_key is empty and the archive's private key is still in " + cfg.DataDir,
			err: errors.New("move " + archive.PrivateKeyFile + " offline and set archive.public_key to data_dir/archive-public-key.asc"), warn: true})
	}
	if p, ok := archiveKeyLeftBehind(cfg.Path); ok {
		out = append(out, checkResult{what: "the archive's private key is still on this server at " + p,
			err: errors.New("move it offline (the practice owner's or the auditor's machine) and delete it here: whoever has it can read the whole clinical record"), warn: true})
	}
	if cfg.PGP.PracticeKey != "" {
		e, err := pgp.LoadPracticeKey(cfg.PGP.PracticeKey, cfg.PGP.PracticeKeyPassphraseFile)
		what := fmt.Sprintf("pgp.practice_key %s (line %d) unlocks, signs and encrypts", cfg.PGP.PracticeKey, cfg.Line("pgp.practice_key"))
		if err == nil {
			what += ": " + pgp.Fingerprint(e)
		}
		out = append(out, checkResult{what: what, err: err})
	}
	return out
}
