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
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/password"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"golang.org/x/net/idna"
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
	CSRFile               = "tls/request.csr"
	CSRKeyFile            = "tls/request-key.pem"
)

// Options are a first installation's particulars.
type Options struct {
	Dir      string   // absolute: the configuration, keys and certificates
	DataDir  string   // the spool, archive, registry and keyring; "": the placeholder's, else Dir/data
	Domain   string   // the practice's mail domain, normalised
	Hostname string   // the name mail clients connect to
	IPs      []net.IP // addresses on the practice's network clients may use instead of the name
	User     string   // the first account's login
	Address  string   // its address, normalised
	// ArchiveKeyOut is where the archive's private key goes: "" beside the
	// configuration (ArchivePrivateKeyFile), "-" nowhere on disk (it is
	// returned, for the command to print), or a path (a USB key).
	ArchiveKeyOut string
	// MetricsListen is [metrics] listen: "" is 127.0.0.1:9587; a container
	// listens on all its addresses and publishes the port on the host's
	// loopback only.
	MetricsListen string
	Now           time.Time
}

// Result is what the admin is told once: where things are, and the first
// account's password, which is kept nowhere.
type Result struct {
	ConfigPath        string
	DataDir           string
	Password          string
	ArchiveKeyPath    string // where the archive's private key was written; "" when returned
	ArchivePrivateKey []byte // with ArchiveKeyOut "-"
	Names             tlsconf.Names
	CAExpires         time.Time
}

// file is one file Write makes: its path, content and mode, and whether
// the service's group may read it (the service needs it).
type file struct {
	path   string
	data   []byte
	mode   os.FileMode
	shared bool
}

// Write makes a first installation in o.Dir: a configuration that loads, the
// practice's and the archive's key pairs, a local CA with a certificate for
// the practice's names, a certificate request for a public CA, and the first
// account with a new password. Everything is made in memory and checked
// first: when any file is in the way nothing is changed, and the packaged
// placeholder configuration is replaced last, only once everything else is
// written.
func Write(o Options) (*Result, error) {
	cfgPath := filepath.Join(o.Dir, ConfigFile)
	placeholder, err := readPlaceholder(cfgPath)
	if err != nil {
		return nil, err
	}
	if o.DataDir == "" {
		o.DataDir = defaultDataDir(placeholder, o.Dir)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.MetricsListen == "" {
		o.MetricsListen = "127.0.0.1:9587"
	}
	res := &Result{ConfigPath: cfgPath, DataDir: o.DataDir}
	files, cfgText, err := plan(o, res)
	if err != nil {
		return nil, err
	}
	if err := preflight(o.Dir, files); err != nil {
		return nil, err
	}
	w := &writer{}
	if err := w.writeAll(o.Dir, files); err != nil {
		w.undo()
		return nil, err
	}
	if err := w.placeConfig(cfgPath, cfgText, placeholder != nil); err != nil {
		w.undo()
		return nil, err
	}
	if err := shareWithService(o.Dir, files, cfgPath); err != nil {
		return nil, err
	}
	return res, nil
}

// readPlaceholder returns the packaged placeholder at cfgPath (nil when
// there is no configuration), or why init may not go on.
func readPlaceholder(cfgPath string) (*config.Config, error) {
	b, err := os.ReadFile(cfgPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(b), packagedDefaultMarker) {
		return nil, fmt.Errorf("%s already exists: init never overwrites a configuration (choose another --dir, or edit it)", cfgPath)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return &config.Config{}, nil // an unreadable placeholder is replaced all the same
	}
	return cfg, nil
}

// defaultDataDir is the placeholder's data_dir (the package's
// /var/lib/sealpost, where the service may write), else DIR/data.
func defaultDataDir(placeholder *config.Config, dir string) string {
	if placeholder != nil && placeholder.DataDir != "" {
		return placeholder.DataDir
	}
	return filepath.Join(dir, "data")
}

// plan makes every file's content: keys, certificates, the configuration.
func plan(o Options, res *Result) ([]file, []byte, error) {
	var files []file
	add := func(name string, data []byte, mode os.FileMode, shared bool) {
		files = append(files, file{path: filepath.Join(o.Dir, name), data: data, mode: mode, shared: shared})
	}
	practicePriv, practicePub, err := archive.NewKeyPair(o.Domain+" practice", "practice@"+o.Domain)
	if err != nil {
		return nil, nil, err
	}
	add(PracticeKeyFile, practicePriv, 0o600, true)
	add(PracticePublicKeyFile, practicePub, 0o644, false)
	archivePriv, archivePub, err := archive.NewKeyPair(o.Domain+" clinical record archive", "archive@"+o.Domain)
	if err != nil {
		return nil, nil, err
	}
	add(ArchivePublicKeyFile, archivePub, 0o644, false)
	// The service never needs the archive's private key: root's alone, if
	// it is on the server at all.
	switch o.ArchiveKeyOut {
	case "":
		add(ArchivePrivateKeyFile, archivePriv, 0o600, false)
		res.ArchiveKeyPath = filepath.Join(o.Dir, ArchivePrivateKeyFile)
	case "-":
		res.ArchivePrivateKey = archivePriv
	default:
		p, err := filepath.Abs(o.ArchiveKeyOut)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, file{path: p, data: archivePriv, mode: 0o600})
		res.ArchiveKeyPath = p
	}
	res.Names = tlsconf.PracticeNames(o.Hostname, []string{o.Domain}, o.IPs)
	issued, err := tlsconf.NewLocalCA(res.Names, o.Now)
	if err != nil {
		return nil, nil, err
	}
	res.CAExpires = issued.CAExpires
	add("tls/"+tlsconf.CAFile, issued.CA, 0o644, false)
	add("tls/"+tlsconf.CAKeyFile, issued.CAKey, 0o600, false) // root renews; the service never signs
	add("tls/"+tlsconf.CertFile, issued.Cert, 0o644, false)
	add("tls/"+tlsconf.KeyFile, issued.Key, 0o600, true)
	csr, csrKey, err := certificateRequest(o.Hostname, o.Domain)
	if err != nil {
		return nil, nil, err
	}
	add(CSRFile, csr, 0o644, false)
	add(CSRKeyFile, csrKey, 0o600, true) // becomes tls_key once a public CA signs the request

	pw, hash, err := newPassword()
	if err != nil {
		return nil, nil, err
	}
	res.Password = pw
	cfg, err := configText(o, hash)
	if err != nil {
		return nil, nil, err
	}
	return files, cfg, nil
}

func newPassword() (pw, hash string, err error) {
	secret := make([]byte, 15)
	if _, err := rand.Read(secret); err != nil {
		return "", "", err
	}
	pw = base64.RawURLEncoding.EncodeToString(secret)
	hash, err = password.Hash(pw)
	return pw, hash, err
}

// preflight refuses, before anything is changed, when a file Write would
// make is already there: keys are never overwritten, and an earlier
// install's are named so the admin can decide.
func preflight(dir string, files []file) error {
	var there []string
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil {
			there = append(there, f.path)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if len(there) == 0 {
		return nil
	}
	return fmt.Errorf("nothing was changed: %s already exist%s (an earlier install's, kept by a purge?). init never overwrites keys: "+
		"move them out of %s (keep any archive private key: it is the only way to read the record written with it), or choose another --dir",
		strings.Join(there, ", "), map[bool]string{true: "s", false: ""}[len(there) == 1], dir)
}

// writer makes the files, remembering what it made so that a failure
// half-way leaves nothing behind.
type writer struct {
	made []string // files and folders, in the order made
}

func (w *writer) writeAll(dir string, files []file) error {
	for _, f := range files {
		if err := w.mkdirs(filepath.Dir(f.path)); err != nil {
			return err
		}
		if err := writeNew(f.path, f.data, f.mode); err != nil {
			return err
		}
		w.made = append(w.made, f.path)
	}
	return nil
}

// mkdirs makes dir and its missing parents (0700 until shared), noting them.
func (w *writer) mkdirs(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := w.mkdirs(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	w.made = append(w.made, dir)
	return nil
}

// placeConfig writes the configuration beside its place, checks that it
// loads, and puts it in place: over the placeholder, or where there was none
// (never over one that appeared meanwhile).
func (w *writer) placeConfig(cfgPath string, text []byte, overPlaceholder bool) error {
	tmp := filepath.Join(filepath.Dir(cfgPath), ".sealpost-init.toml")
	os.Remove(tmp)
	if err := writeNew(tmp, text, 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if _, err := config.Load(tmp); err != nil {
		return fmt.Errorf("the configuration init wrote does not load (a bug; please report it): %w", err)
	}
	if overPlaceholder {
		if _, err := readPlaceholder(cfgPath); err != nil {
			return err
		}
		return os.Rename(tmp, cfgPath)
	}
	if err := os.Link(tmp, cfgPath); err != nil {
		return fmt.Errorf("place the configuration: %w", err)
	}
	return nil
}

// undo removes what was made, newest first.
func (w *writer) undo() {
	for i := len(w.made) - 1; i >= 0; i-- {
		os.Remove(w.made[i])
	}
}

func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// serviceGroup is the group the packaged service runs as.
var serviceGroup = "sealpost"

// shareWithService lets the service read what it needs when init runs as
// root on a packaged install: the configuration, the practice key, the
// certificate's key and the request's key are root's and the sealpost
// group's (0640), the folders 0750; the local CA's key and the archive's
// private key stay root's alone (0600): the service never signs a
// certificate and never reads the record.
func shareWithService(dir string, files []file, cfgPath string) error {
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
	share := func(p string, mode os.FileMode) error {
		if err := os.Chown(p, 0, gid); err != nil {
			return err
		}
		return os.Chmod(p, mode)
	}
	for _, d := range []string{dir, filepath.Join(dir, "tls")} {
		if err := share(d, 0o750); err != nil {
			return err
		}
	}
	for _, f := range files {
		if f.shared {
			if err := share(f.path, 0o640); err != nil {
				return err
			}
		}
	}
	return share(cfgPath, 0o640)
}

// certificateRequest makes a key and a CSR for hostname and the names mail
// clients set themselves up with, to take to a public CA.
func certificateRequest(hostname, domain string) (csr, key []byte, err error) {
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
	if a, err := idna.Lookup.ToASCII(domain); err == nil {
		tmpl.DNSNames = append(tmpl.DNSNames, "autoconfig."+a, "autodiscover."+a)
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

// LANAddresses are this machine's addresses on private networks (RFC 1918,
// unique local IPv6): those mail clients in the practice may connect to
// instead of the name.
func LANAddresses() []net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsPrivate() && !n.IP.IsLoopback() {
			out = append(out, n.IP)
		}
	}
	return out
}
