package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"github.com/sealpost/sealpost/relay"
)

func init() {
	register(&command{
		name:    "init",
		args:    "--dir DIR --domain DOMAIN [--hostname NAME] [--data-dir DIR] [--user NAME]",
		summary: "write a working configuration, the practice and archive keys, and a TLS certificate",
		run:     runInit,
	})
}

// packagedDefaultMarker is in the configuration the Debian package installs;
// init may replace that file, and no other.
const packagedDefaultMarker = "# packaged default: `sealpost init --dir /etc/sealpost` replaces this file"

// initFiles are the names init writes below --dir.
const (
	initConfig         = "sealpost.toml"
	initPracticeKey    = "practice-key.asc"
	initPracticePublic = "practice-public-key.asc"
	initArchivePublic  = "archive-public-key.asc"
	initArchivePrivate = "archive-private-key.MOVE-OFFLINE.asc"
	initUpstreamSecret = "upstream-password"
)

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
	cfgPath := filepath.Join(abs, initConfig)
	if b, err := os.ReadFile(cfgPath); err == nil {
		if !strings.Contains(string(b), packagedDefaultMarker) {
			return fmt.Errorf("%s already exists: init never overwrites a configuration (choose another --dir, or edit it)", cfgPath)
		}
		// The Debian package's placeholder, untouched: init replaces it.
		if err := os.Remove(cfgPath); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(abs, "tls"), 0o700); err != nil {
		return err
	}
	w := &initWriter{dir: abs}

	practicePriv, practicePub, err := archive.NewKeyPair(d+" practice", "practice@"+d)
	if err != nil {
		return err
	}
	w.file(initPracticeKey, practicePriv, 0o600)
	w.file(initPracticePublic, practicePub, 0o644)
	archivePriv, archivePub, err := archive.NewKeyPair(d+" clinical record archive", "archive@"+d)
	if err != nil {
		return err
	}
	w.file(initArchivePublic, archivePub, 0o644)
	w.file(initArchivePrivate, archivePriv, 0o600)

	cert, key, err := tlsconf.EnsureLocalCertificate(filepath.Join(abs, "tls"), *hostname, time.Now())
	if err != nil {
		return err
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "cert.pem", "key.pem"} {
		if _, err := os.Stat(filepath.Join(abs, "tls", f)); err == nil {
			w.files = append(w.files, filepath.Join(abs, "tls", f))
		}
	}
	csr, csrKey, err := certificateRequest(*hostname)
	if err != nil {
		return err
	}
	w.file(filepath.Join("tls", "request.csr"), csr, 0o644)
	w.file(filepath.Join("tls", "request-key.pem"), csrKey, 0o600)

	password := make([]byte, 15)
	if _, err := rand.Read(password); err != nil {
		return err
	}
	pw := base64.RawURLEncoding.EncodeToString(password)
	hash, err := relay.HashPassword(pw)
	if err != nil {
		return err
	}

	var cfg strings.Builder
	err = configTemplate.Execute(&cfg, map[string]string{
		"DataDir": *dataDir, "Hostname": *hostname, "Domain": d, "User": *user, "Address": address,
		"Hash": hash, "Cert": cert, "Key": key, "PracticeKey": filepath.Join(abs, initPracticeKey),
		"ArchiveKey": filepath.Join(abs, initArchivePublic), "Secret": filepath.Join(abs, initUpstreamSecret),
	})
	if err != nil {
		return err
	}
	w.file(initConfig, []byte(cfg.String()), 0o600)
	if w.err != nil {
		return w.err
	}
	if err := w.shareWithService(); err != nil {
		return err
	}
	if _, err := config.Load(cfgPath); err != nil {
		return fmt.Errorf("the configuration init wrote does not load (a bug; please report it): %w", err)
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
		initConfig, initPracticeKey, initPracticePublic, initArchivePublic, initArchivePrivate,
		"tls/ca.pem, tls/cert.pem, tls/key.pem", "tls/request.csr, tls/request-key.pem", *hostname,
		*user, address, pw,
		filepath.Join(abs, initArchivePrivate), filepath.Join(abs, initUpstreamSecret), *user, cfgPath, cfgPath,
		filepath.Join(abs, "tls", "ca.pem"), *hostname, d)
	return nil
}

// initWriter creates new files and remembers the first error, so that init
// reads as the list of what it writes.
type initWriter struct {
	dir   string
	err   error
	files []string
}

// serviceGroup is the group the packaged service runs as.
const serviceGroup = "sealpost"

// shareWithService lets the service read what init wrote when init runs as
// root on a packaged install: root owns the files, the sealpost group may
// read them, nobody else may.
func (w *initWriter) shareWithService() error {
	if os.Geteuid() != 0 {
		return nil
	}
	g, err := user.LookupGroup(serviceGroup)
	if err != nil {
		return nil // not a packaged install: the files stay root's
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return nil
	}
	for _, p := range append([]string{w.dir, filepath.Join(w.dir, "tls")}, w.files...) {
		if err := os.Chown(p, 0, gid); err != nil {
			return err
		}
		mode := os.FileMode(0o640)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			mode = 0o750
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	return nil
}

func (w *initWriter) file(name string, b []byte, mode os.FileMode) {
	if w.err != nil {
		return
	}
	path := filepath.Join(w.dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if errors.Is(err, os.ErrExist) {
		w.err = fmt.Errorf("%s already exists: init does not overwrite it", path)
		return
	}
	if err != nil {
		w.err = err
		return
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	w.err = err
	w.files = append(w.files, path)
}

// certificateRequest makes a key and a CSR for hostname, to take to a public CA.
func certificateRequest(hostname string) (csr, key []byte, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: hostname}}
	if ip := net.ParseIP(hostname); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{hostname}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

var configTemplate = template.Must(template.New("config").Parse(`# sealpost configuration, written by sealpost init. Every key is explained in
# config.example.toml and the README; sealpost check -c THIS_FILE tells what is wrong.

data_dir = "{{.DataDir}}"

[log]
level = "info"
format = "json"                        # for journald and log collectors; "text" reads better by eye

[smtp]
hostname = "{{.Hostname}}"
submission = "0.0.0.0:587"             # STARTTLS; AUTH only after TLS
submissions = "0.0.0.0:465"            # implicit TLS
tls_cert = "{{.Cert}}"                 # signed by tls/ca.pem; replace with a public CA's certificate
tls_key = "{{.Key}}"                   # for {{.Hostname}} if you have one
max_message_bytes = 36700160

[[account]]
username = "{{.User}}"
password_hash = "{{.Hash}}"
addresses = ["{{.Address}}"]
upstream_username = "{{.Address}}"
upstream_password_file = ""            # once [upstream] names the provider: a file holding its password,
                                       # e.g. "{{.Secret}}" (chmod 640, group sealpost)
upstream_auth = "password"             # or "oauth2" (Microsoft 365, Google): no password file; needs [oauth2]
                                       # and one sealpost oauth2 login --account {{.User}}

[upstream]
address = "outbox"                     # set to the provider: "smtp.gmail.com:587", "smtp.office365.com:587"
tls = "starttls"

[policy]
internal_domains = ["{{.Domain}}"]
notice = """Notice of Confidentiality: This email may contain protected health information. \
It is intended only for the person to whom it is addressed. If you received it in error, \
please tell the sender and delete it."""

[pgp]
practice_key = "{{.PracticeKey}}"
autocrypt = "propose"

[archive]
public_key = "{{.ArchiveKey}}"
retention = "7y"

[metrics]
listen = "127.0.0.1:9587"              # /metrics, /healthz, /readyz for monitoring

[autoconfig]
listen = ""                            # e.g. "0.0.0.0:80" for autoconfig.{{.Domain}}
listen_tls = ""                        # e.g. "0.0.0.0:443" for autodiscover.{{.Domain}} (Outlook needs HTTPS)
imap = ""                              # the provider's IMAP host:port, e.g. "imap.gmail.com:993"
`))
