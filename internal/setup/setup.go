package setup

import (
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
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/password"
	"github.com/sealpost/sealpost/internal/tlsconf"
)

// packagedDefaultMarker is in the configuration the Debian package
// installs; Write may replace that file, and no other.
const packagedDefaultMarker = "# packaged default: `sealpost init --dir /etc/sealpost` replaces this file"

// The names Write gives the files it makes in the folder.
const (
	ConfigFile            = "sealpost.toml"
	PracticeKeyFile       = "practice-key.asc"
	PracticePublicKeyFile = "practice-public-key.asc"
	ArchivePublicKeyFile  = "archive-public-key.asc"
	ArchivePrivateKeyFile = "archive-private-key.MOVE-OFFLINE.asc"
	UpstreamPasswordFile  = "upstream-password"
)

// Options are a first installation's particulars.
type Options struct {
	Dir      string // absolute: the configuration, keys and certificates
	DataDir  string // the spool, archive, registry and keyring
	Domain   string // the practice's mail domain, normalised
	Hostname string // the name mail clients connect to
	User     string // the first account's login
	Address  string // its address, normalised
}

// Result is what the admin is told once: where things are, and the first
// account's password, which is kept nowhere.
type Result struct {
	ConfigPath string
	Password   string
}

// Write makes a first installation in o.Dir: a configuration that loads, the
// practice's and the archive's key pairs, a local CA with a certificate for
// the hostname, a certificate request for a public CA, and the first
// account with a new password. It overwrites nothing but the packaged
// placeholder configuration.
func Write(o Options) (*Result, error) {
	cfgPath := filepath.Join(o.Dir, ConfigFile)
	if b, err := os.ReadFile(cfgPath); err == nil {
		if !strings.Contains(string(b), packagedDefaultMarker) {
			return nil, fmt.Errorf("%s already exists: init never overwrites a configuration (choose another --dir, or edit it)", cfgPath)
		}
		// The Debian package's placeholder, untouched: init replaces it.
		if err := os.Remove(cfgPath); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, "tls"), 0o700); err != nil {
		return nil, err
	}
	w := &writer{dir: o.Dir}
	if err := w.keys(o.Domain); err != nil {
		return nil, err
	}
	cert, key, err := w.certificates(o.Hostname)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 15)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	pw := base64.RawURLEncoding.EncodeToString(secret)
	hash, err := password.Hash(pw)
	if err != nil {
		return nil, err
	}
	var cfg strings.Builder
	err = configTemplate.Execute(&cfg, map[string]string{
		"DataDir": o.DataDir, "Hostname": o.Hostname, "Domain": o.Domain, "User": o.User, "Address": o.Address,
		"Hash": hash, "Cert": cert, "Key": key, "PracticeKey": filepath.Join(o.Dir, PracticeKeyFile),
		"ArchiveKey": filepath.Join(o.Dir, ArchivePublicKeyFile), "Secret": filepath.Join(o.Dir, UpstreamPasswordFile),
	})
	if err != nil {
		return nil, err
	}
	w.file(ConfigFile, []byte(cfg.String()), 0o600)
	if w.err != nil {
		return nil, w.err
	}
	if err := w.shareWithService(); err != nil {
		return nil, err
	}
	if _, err := config.Load(cfgPath); err != nil {
		return nil, fmt.Errorf("the configuration init wrote does not load (a bug; please report it): %w", err)
	}
	return &Result{ConfigPath: cfgPath, Password: pw}, nil
}

// keys makes the practice's key pair and the archive's.
func (w *writer) keys(domain string) error {
	practicePriv, practicePub, err := archive.NewKeyPair(domain+" practice", "practice@"+domain)
	if err != nil {
		return err
	}
	w.file(PracticeKeyFile, practicePriv, 0o600)
	w.file(PracticePublicKeyFile, practicePub, 0o644)
	archivePriv, archivePub, err := archive.NewKeyPair(domain+" clinical record archive", "archive@"+domain)
	if err != nil {
		return err
	}
	w.file(ArchivePublicKeyFile, archivePub, 0o644)
	w.file(ArchivePrivateKeyFile, archivePriv, 0o600)
	return nil
}

// certificates makes the local CA and the certificate it signs for
// hostname, and a certificate request for a public CA.
func (w *writer) certificates(hostname string) (certFile, keyFile string, err error) {
	certFile, keyFile, err = tlsconf.EnsureLocalCertificate(filepath.Join(w.dir, "tls"), hostname, time.Now())
	if err != nil {
		return "", "", err
	}
	for _, f := range []string{"ca.pem", "ca-key.pem", "cert.pem", "key.pem"} {
		if _, err := os.Stat(filepath.Join(w.dir, "tls", f)); err == nil {
			w.files = append(w.files, filepath.Join(w.dir, "tls", f))
		}
	}
	csr, csrKey, err := certificateRequest(hostname)
	if err != nil {
		return "", "", err
	}
	w.file(filepath.Join("tls", "request.csr"), csr, 0o644)
	w.file(filepath.Join("tls", "request-key.pem"), csrKey, 0o600)
	return certFile, keyFile, nil
}

// writer creates new files and remembers the first error, so that Write
// reads as the list of what it writes.
type writer struct {
	dir   string
	err   error
	files []string
}

// serviceGroup is the group the packaged service runs as.
const serviceGroup = "sealpost"

// shareWithService lets the service read what Write wrote when init runs as
// root on a packaged install: root owns the files, the sealpost group may
// read them, nobody else may.
func (w *writer) shareWithService() error {
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

func (w *writer) file(name string, b []byte, mode os.FileMode) {
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
