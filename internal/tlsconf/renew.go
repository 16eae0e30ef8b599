package tlsconf

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/internal/fsutil"
)

// Renewal is what Renew did in a local CA's folder, for the admin.
type Renewal struct {
	Dir         string
	CAExpires   time.Time
	CertExpires time.Time
	// MadeCA: there was no CA yet (a first start).
	MadeCA bool
	// CertRenewed: a new server certificate was written.
	CertRenewed bool
	// NextCA is a CA waiting to take over (ca-next.pem), which therapists
	// should import now; it signs the server certificate from NextCAFrom
	// on, or earlier if the current CA cannot.
	NextCA     string
	NextCAFrom time.Time
	// NewCA: a new CA took over just now. Mail clients that have not
	// imported it do not trust the server until they do.
	NewCA bool
	// Why says why a new CA was made or took over.
	Why string
}

// EnsureLocalCertificate makes, below dir, a local CA for hostname and a
// server certificate it signs (Renew with PracticeNames(hostname, nil,
// nil)), and returns the certificate's and key's paths.
func EnsureLocalCertificate(dir, hostname string, now time.Time) (certFile, keyFile string, err error) {
	if _, err := Renew(dir, PracticeNames(hostname, nil, nil), now); err != nil {
		return "", "", err
	}
	return filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile), nil
}

// Renew keeps the local CA in dir and its server certificate current for
// names: it makes them when there are none, renews the certificate a month
// before it ends or when it lacks a name, and rolls the CA over: a new one
// (ca-next.pem) is made three months before the old one ends, or at once
// when the old one cannot vouch for the names (made by an older sealpost
// without name constraints, or a hostname that changed); it takes over at
// the first certificate renewal once it is two months old, or at once when
// the old one can no longer sign. Files it replaces keep their mode and
// owner, so a renewal as root leaves the service's key readable by it.
func Renew(dir string, names Names, now time.Time) (*Renewal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	r := &Renewal{Dir: dir}
	path := func(name string) string { return filepath.Join(dir, name) }
	ca, caKey, err := loadCA(path(CAFile), path(CAKeyFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if ca, caKey, err = writeNewCA(path(CAFile), path(CAKeyFile), names, now); err != nil {
			return nil, err
		}
		r.MadeCA = true
	case err != nil:
		return nil, fmt.Errorf("tls: local CA in %s: %w", dir, err)
	}
	// Without its hostname the server is of no use; other names (a domain
	// added since) wait for the next CA, which therapists first import.
	usable := names.hostname().permittedBy(ca) && now.Before(ca.NotAfter.Add(-renewBefore))
	if why := retiring(ca, names, now); why != "" {
		next, _, err := loadCA(path(NextCAFile), path(nextCAKeyFile))
		if err != nil || !names.permittedBy(next) {
			if _, _, err := writeNewCA(path(NextCAFile), path(nextCAKeyFile), names, now); err != nil {
				return nil, err
			}
			next, _, _ = loadCA(path(NextCAFile), path(nextCAKeyFile))
		}
		r.NextCA, r.NextCAFrom, r.Why = path(NextCAFile), next.NotBefore.Add(time.Hour+caHandover), why
	}
	leafDue := !leafIsGood(path(CertFile), path(KeyFile), ca, names.within(ca), now)
	if r.NextCA != "" && (!usable || (leafDue && !now.Before(r.NextCAFrom))) {
		if ca, caKey, err = takeOver(dir); err != nil {
			return nil, err
		}
		r.NewCA, r.NextCA, r.NextCAFrom, leafDue = true, "", time.Time{}, true
	}
	if leafDue {
		cert, key, err := issueServer(ca, caKey, names.within(ca), now)
		if err != nil {
			return nil, err
		}
		if err := replaceKeeping(path(KeyFile), key, 0o600); err != nil {
			return nil, err
		}
		if err := replaceKeeping(path(CertFile), cert, 0o644); err != nil {
			return nil, err
		}
		r.CertRenewed = true
	}
	r.CAExpires = ca.NotAfter
	r.CertExpires, err = CertificateExpiry(path(CertFile))
	return r, err
}

// retiring says why ca should make way for a new CA, or "".
func retiring(ca *x509.Certificate, names Names, now time.Time) string {
	switch {
	case !constrained(ca):
		return "the local CA was made without name constraints (by an older sealpost): it could vouch for any website"
	case !names.permittedBy(ca):
		return "the local CA cannot vouch for every name the server now has (" + names.first() + ")"
	case !now.Before(ca.NotAfter.Add(-caRollover)):
		return "the local CA ends on " + ca.NotAfter.Format(time.DateOnly)
	}
	return ""
}

func writeNewCA(certPath, keyPath string, names Names, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	ca, key, err := newCA(names, now)
	if err != nil {
		return nil, nil, err
	}
	// Only whoever renews needs the key: root for sealpost init's CA.
	if err := replaceKeeping(keyPath, keyPEM(key), 0o600); err != nil {
		return nil, nil, err
	}
	if err := replaceKeeping(certPath, certPEM(ca.Raw), 0o644); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

// takeOver makes the next CA the current one; the old certificate stays as
// ca-previous.pem, its key is removed.
func takeOver(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	path := func(name string) string { return filepath.Join(dir, name) }
	steps := [][2]string{{CAFile, PreviousCAFile}, {NextCAFile, CAFile}, {nextCAKeyFile, CAKeyFile}}
	for _, s := range steps {
		if err := os.Rename(path(s[0]), path(s[1])); err != nil {
			return nil, nil, fmt.Errorf("tls: the new local CA takes over: %w", err)
		}
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return nil, nil, err
	}
	return loadCA(path(CAFile), path(CAKeyFile))
}

func leafIsGood(certFile, keyFile string, ca *x509.Certificate, names Names, now time.Time) bool {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || leaf.IsCA || leaf.CheckSignatureFrom(ca) != nil {
		return false
	}
	if !now.Before(leaf.NotAfter.Add(-renewBefore)) || !names.namedBy(leaf) {
		return false
	}
	return slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
}

// replaceKeeping writes b to path whole (beside it, fsynced, renamed over
// it): a new file gets mode, an existing one's mode and owner are kept.
func replaceKeeping(path string, b []byte, mode os.FileMode) error {
	uid, gid := -1, -1
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	if err := fsutil.WriteFileSync(tmp, b, 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tls: %w", err)
	}
	if uid >= 0 && os.Geteuid() == 0 {
		if err := os.Chown(tmp, uid, gid); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("tls: %w", err)
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tls: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tls: %w", err)
	}
	return fsutil.SyncDir(filepath.Dir(path))
}
