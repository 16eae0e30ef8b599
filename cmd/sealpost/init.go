package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/setup"
	"github.com/sealpost/sealpost/internal/tlsconf"
)

func init() {
	register(&command{
		name:    "init",
		args:    "--dir DIR --domain DOMAIN [--hostname NAME] [--ip ADDR]... [--data-dir DIR] [--user NAME] [--archive-key-out FILE|-] [--metrics-listen ADDR]",
		summary: "write a working configuration, the practice and archive keys, and a TLS certificate",
		run:     runInit,
	})
}

// ipList is --ip, given once per address or as a comma-separated list.
type ipList []net.IP

func (l *ipList) String() string { return fmt.Sprint(*l) }

func (l *ipList) Set(s string) error {
	for part := range strings.SplitSeq(s, ",") {
		ip := net.ParseIP(strings.TrimSpace(part))
		if ip == nil {
			return fmt.Errorf("%q is not an IP address", part)
		}
		*l = append(*l, ip)
	}
	return nil
}

func runInit(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	dir := fs.String("dir", "", "folder for the configuration, keys and certificates (e.g. /etc/sealpost)")
	domain := fs.String("domain", "", "the practice's mail domain (e.g. practice.example)")
	hostname := fs.String("hostname", "", "the name mail clients connect to (default: sealpost.DOMAIN)")
	var ips ipList
	fs.Var(&ips, "ip", "an address on the practice's network that mail clients may use instead of the name (default: this machine's private addresses)")
	dataDir := fs.String("data-dir", "", "where the spool, archive, registry and keyring live (default: the packaged configuration's, else DIR/data)")
	user := fs.String("user", "therapist", "the first account's login; its address is USER@DOMAIN")
	metrics := fs.String("metrics-listen", "127.0.0.1:9587", "[metrics] listen: /metrics, /healthz, /readyz (a container: 0.0.0.0:9587, published on the host's loopback)")
	keyOut := fs.String("archive-key-out", "", `where the archive's PRIVATE key goes (default: DIR/`+setup.ArchivePrivateKeyFile+`); "-": standard output, never on this disk`)
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
	if len(ips) == 0 {
		ips = setup.LANAddresses()
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		if *dataDir, err = filepath.Abs(*dataDir); err != nil {
			return err
		}
	}
	res, err := setup.Write(setup.Options{Dir: abs, DataDir: *dataDir, Domain: d, Hostname: *hostname, IPs: ips, User: *user, Address: address,
		ArchiveKeyOut: *keyOut, MetricsListen: *metrics})
	if err != nil {
		return err
	}
	out := c.stdout
	if res.ArchivePrivateKey != nil {
		// Standard output carries the key alone, for a redirection.
		out = c.stderr
		if _, err := c.stdout.Write(res.ArchivePrivateKey); err != nil {
			return err
		}
	}
	printInitDone(out, abs, *hostname, d, *user, address, res)
	return nil
}

func printInitDone(w io.Writer, dir, hostname, domain, user, address string, res *setup.Result) {
	keyLine := res.ArchiveKeyPath
	moveStep := fmt.Sprintf(`MOVE THE ARCHIVE'S PRIVATE KEY OFFLINE NOW: copy %s to the practice owner's
    or the auditor's machine (or a USB key in the safe), check the copy, then delete it here.
    Whoever has it can read the whole clinical record; sealpost never needs it.`, res.ArchiveKeyPath)
	if res.ArchivePrivateKey != nil {
		keyLine = "(standard output: not on this disk)"
		moveStep = `Keep the archive's private key that went to standard output in two safe places (the practice
    owner's, a USB key in the safe). Whoever has it can read the whole clinical record; sealpost never needs it.`
	} else if !strings.HasPrefix(res.ArchiveKeyPath, dir+string(filepath.Separator)) {
		moveStep = fmt.Sprintf(`The archive's private key is at %s: keep it off the server, in two safe places.
    Whoever has it can read the whole clinical record; sealpost never needs it.`, res.ArchiveKeyPath)
	}
	var names []string
	names = append(names, res.Names.DNS...)
	for _, ip := range res.Names.IPs {
		names = append(names, ip.String())
	}
	fmt.Fprintf(w, `sealpost is set up in %s (data in %s):
  %-40s the configuration (one account, outbox delivery until you set the provider)
  %-40s the practice's private OpenPGP key: signs every encrypted message
  %-40s its public half, for clients who want to verify the practice's signature
  %-40s the archive's public key: the clinical record is encrypted to it
  %-40s the archive's PRIVATE key
  %-40s a local CA for mail clients to trust (until %s), and sealpost's certificate
  %-40s a certificate request for %s, for a public CA

The certificate names %s;
the local CA can vouch for these names only, and its key (tls/ca-key.pem) is root's alone.

The first account: login %q, address %s, password: %s
(shown only now; set another with: sealpost passwd, then password_hash in the config)

Next steps:
 1. %s
 2. Set [upstream] address to the provider's submission server, put the provider password
    (an app password for Google Workspace) into %s,
    and set upstream_password_file to it. Microsoft 365 takes no passwords: set
    upstream_auth = "oauth2" and [oauth2], then run sealpost oauth2 login --account %s
    (deploy/README.md, "OAuth 2.0").
 3. Check everything: sealpost check -c %s
 4. Start it: systemctl enable --now sealpost   (or: sealpost serve -c %s)
 5. Give therapists' mail clients %s (or a certificate from a public CA for %s),
    and point DNS for autoconfig.%s and autodiscover.%s at this server (README: "Clients that configure themselves").
 6. The practice console is at https://127.0.0.1:8443/ on this server: log in as %q with the password above;
    add an admin with [[console.admin]] (deploy/README.md, "The practice console"). Never expose it to the internet.
`, dir, res.DataDir,
		setup.ConfigFile, setup.PracticeKeyFile, setup.PracticePublicKeyFile, setup.ArchivePublicKeyFile, keyLine,
		"tls/ca.pem, tls/cert.pem, tls/key.pem", res.CAExpires.Format("2006-01-02"), "tls/request.csr, tls/request-key.pem", hostname,
		strings.Join(names, ", "),
		user, address, res.Password,
		moveStep, filepath.Join(dir, setup.UpstreamPasswordFile), user, res.ConfigPath, res.ConfigPath,
		filepath.Join(dir, "tls", tlsconf.CAFile), hostname, domain, domain, user)
}

// archiveKeyLeftBehind is where init put the archive's private key, beside
// the configuration: it must not stay there.
func archiveKeyLeftBehind(configPath string) (string, bool) {
	p := filepath.Join(filepath.Dir(configPath), setup.ArchivePrivateKeyFile)
	_, err := os.Stat(p)
	return p, err == nil
}
