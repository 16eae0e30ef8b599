package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/setup"
)

func init() {
	register(&command{
		name:    "init",
		args:    "--dir DIR --domain DOMAIN [--hostname NAME] [--data-dir DIR] [--user NAME]",
		summary: "write a working configuration, the practice and archive keys, and a TLS certificate",
		run:     runInit,
	})
}

func runInit(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	dir := fs.String("dir", "", "folder for the configuration, keys and certificates (e.g. /etc/sealpost)")
	domain := fs.String("domain", "", "the practice's mail domain (e.g. practice.example)")
	hostname := fs.String("hostname", "", "the name mail clients connect to (default: sealpost.DOMAIN)")
	dataDir := fs.String("data-dir", "", "where the spool, archive, registry and keyring live (default: DIR/data)")
	user := fs.String("user", "therapist", "the first account's login; its address is USER@DOMAIN")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("takes no arguments, only flags")
	}
	if *dir == "" || *domain == "" {
		return usagef("needs --dir and --domain")
	}
	d := strings.ToLower(strings.TrimSuffix(*domain, "."))
	address, err := addr.Normalize(*user + "@" + d)
	if err != nil {
		return usagef("--domain %q with --user %q is not a mail address: %v", *domain, *user, err)
	}
	if *hostname == "" {
		*hostname = "sealpost." + d
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if *dataDir == "" {
		*dataDir = filepath.Join(abs, "data")
	}
	res, err := setup.Write(setup.Options{Dir: abs, DataDir: *dataDir, Domain: d, Hostname: *hostname, User: *user, Address: address})
	if err != nil {
		return err
	}

	fmt.Fprintf(c.stdout, `sealpost is set up in %s:
  %-40s the configuration (one account, outbox delivery until you set the provider)
  %-40s the practice's private OpenPGP key: signs every encrypted message
  %-40s its public half, for clients who want to verify the practice's signature
  %-40s the archive's public key: the clinical record is encrypted to it
  %-40s the archive's PRIVATE key
  %-40s a local CA for mail clients to trust, and sealpost's certificate
  %-40s a certificate request for %s, for a public CA

The first account: login %q, address %s, password: %s
(shown only now; set another with: sealpost passwd, then password_hash in the config)

Next steps:
 1. MOVE THE ARCHIVE'S PRIVATE KEY OFFLINE NOW: copy %s to the practice owner's
    or the auditor's machine (or a USB key in the safe), check the copy, then delete it here.
    Whoever has it can read the whole clinical record; sealpost never needs it.
 2. Set [upstream] address to the provider's submission server, put the provider password
    (an app password for Google Workspace) into %s,
    and set upstream_password_file to it. Microsoft 365 takes no passwords: set
    upstream_auth = "oauth2" and [oauth2], then run sealpost oauth2 login --account %s
    (deploy/README.md, "OAuth 2.0").
 3. Check everything: sealpost check -c %s
 4. Start it: systemctl enable --now sealpost   (or: sealpost serve -c %s)
 5. Give therapists' mail clients %s (or a certificate from a public CA for %s),
    and point DNS for autoconfig.%s at this server (README: "Clients that configure themselves").
`, abs,
		setup.ConfigFile, setup.PracticeKeyFile, setup.PracticePublicKeyFile, setup.ArchivePublicKeyFile, setup.ArchivePrivateKeyFile,
		"tls/ca.pem, tls/cert.pem, tls/key.pem", "tls/request.csr, tls/request-key.pem", *hostname,
		*user, address, res.Password,
		filepath.Join(abs, setup.ArchivePrivateKeyFile), filepath.Join(abs, setup.UpstreamPasswordFile), *user, res.ConfigPath, res.ConfigPath,
		filepath.Join(abs, "tls", "ca.pem"), *hostname, d)
	return nil
}

// archiveKeyLeftBehind is where init put the archive's private key, beside
// the configuration: it must not stay there.
func archiveKeyLeftBehind(configPath string) (string, bool) {
	p := filepath.Join(filepath.Dir(configPath), setup.ArchivePrivateKeyFile)
	_, err := os.Stat(p)
	return p, err == nil
}
