package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/tlsconf"
)

func init() {
	register(&command{
		name:    "tls renew",
		args:    "[-c FILE]",
		summary: "renew sealpost's own certificate and roll its local CA over when due (as root: the Debian package's weekly timer runs it)",
		run:     runTLSRenew,
	})
}

// localCA is the local CA folder sealpost renews for cfg: data_dir/tls when
// no certificate is configured, or the folder of init's CA when tls_cert is
// the certificate it signed. ok is false for a certificate from elsewhere.
func localCA(cfg *config.Config) (dir string, ok bool) {
	if cfg.SMTP.TLSCert == "" {
		return cfg.TLSDir(), true
	}
	dir, ok = tlsconf.LocalCADir(cfg.SMTP.TLSCert)
	return dir, ok && cfg.SMTP.TLSCert == filepath.Join(dir, tlsconf.CertFile) && cfg.SMTP.TLSKey == filepath.Join(dir, tlsconf.KeyFile)
}

// localNames are the names the local CA vouches for: the hostname, the
// autoconfig names of the practice's domains, loopback, and the addresses
// the current certificate names (init's --ip).
func localNames(cfg *config.Config, dir string) tlsconf.Names {
	var ips []net.IP
	if b, err := os.ReadFile(filepath.Join(dir, tlsconf.CertFile)); err == nil {
		ips = certificateIPs(b)
	}
	return tlsconf.PracticeNames(cfg.SMTP.Hostname, cfg.Policy.InternalDomains, ips)
}

// renewLocal renews the local CA's certificate in dir and logs what the
// admin must know.
func renewLocal(cfg *config.Config, dir string, log *slog.Logger) (*tlsconf.Renewal, error) {
	r, err := tlsconf.Renew(dir, localNames(cfg, dir), time.Now())
	if err != nil {
		return nil, err
	}
	switch {
	case r.NewCA:
		log.Error("a new local CA took over: mail clients that have not imported it refuse the server until they do; give every therapist the new ca.pem",
			"ca", filepath.Join(dir, tlsconf.CAFile), "why", r.Why)
	case r.NextCA != "":
		log.Warn("a new local CA is waiting: give every therapist's mail client this file now; it takes over from the date named",
			"ca", r.NextCA, "from", r.NextCAFrom.Format(time.DateOnly), "why", r.Why)
	}
	if r.CertRenewed {
		log.Info("server certificate issued by the local CA", "cert", filepath.Join(dir, tlsconf.CertFile), "until", r.CertExpires.Format(time.DateOnly))
	}
	return r, nil
}

func runTLSRenew(ctx context.Context, c *cli, args []string) error {
	_, cfg, err := c.start(c.flags(), args, noArgs)
	if err != nil {
		return err
	}
	dir, ok := localCA(cfg)
	if !ok {
		fmt.Fprintf(c.stdout, "smtp.tls_cert %s is not the certificate of sealpost's local CA: renew it where it came from (certbot renews its own; sealpost reads a renewed file by itself).\n", cfg.SMTP.TLSCert)
		return nil
	}
	if f, err := os.Open(filepath.Join(dir, tlsconf.CAKeyFile)); os.IsPermission(err) {
		return fmt.Errorf("the local CA's key %s is root's alone: run sudo sealpost tls renew -c %s", filepath.Join(dir, tlsconf.CAKeyFile), cfg.Path)
	} else if err == nil {
		f.Close()
	}
	r, err := tlsconf.Renew(dir, localNames(cfg, dir), time.Now())
	if err != nil {
		return err
	}
	printRenewal(c.stdout, r)
	return nil
}

func printRenewal(w io.Writer, r *tlsconf.Renewal) {
	cert := filepath.Join(r.Dir, tlsconf.CertFile)
	if r.CertRenewed {
		fmt.Fprintf(w, "Renewed %s: valid until %s (a running relay uses it within a minute).\n", cert, r.CertExpires.Format(time.DateOnly))
	} else {
		fmt.Fprintf(w, "%s is valid until %s; it is renewed from %s on.\n", cert, r.CertExpires.Format(time.DateOnly),
			r.CertExpires.AddDate(0, 0, -30).Format(time.DateOnly))
	}
	fmt.Fprintf(w, "The local CA %s is valid until %s.\n", filepath.Join(r.Dir, tlsconf.CAFile), r.CAExpires.Format(time.DateOnly))
	switch {
	case r.NewCA:
		fmt.Fprintf(w, "A NEW LOCAL CA TOOK OVER (%s): mail clients that have not imported the new %s refuse the server until they do; give it to every therapist now (README, \"For therapists\").\n",
			r.Why, filepath.Join(r.Dir, tlsconf.CAFile))
	case r.NextCA != "":
		fmt.Fprintf(w, "A NEW LOCAL CA IS WAITING (%s): give %s to every therapist's mail client now, beside the old one (README, \"For therapists\"); it takes over on %s.\n",
			r.Why, r.NextCA, r.NextCAFrom.Format(time.DateOnly))
	}
}

// certificateIPs are the addresses, other than loopback, a PEM certificate names.
func certificateIPs(pemBytes []byte) []net.IP {
	names, err := tlsconf.CertificateNames(pemBytes)
	if err != nil {
		return nil
	}
	var ips []net.IP
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil && !ip.IsLoopback() {
			ips = append(ips, ip)
		}
	}
	return ips
}
