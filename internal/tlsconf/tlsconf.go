// Package tlsconf makes the TLS settings every listener and every client of
// sealpost uses, in one place, and the local certificate authority and server
// certificate a practice without its own certificate starts with.
package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/sealpost/sealpost/internal/fsutil"
)

// EnsureLocalCertificate makes, below dir, a local certificate authority
// (ca.pem, for therapists' machines to import) and a server certificate signed
// by it (cert.pem, key.pem), and renews the server certificate when it nears
// expiry or no longer names hostname. Thunderbird refuses a server certificate
// that is itself a CA, so the server certificate is a leaf: CA:FALSE,
// serverAuth, SANs for hostname, localhost, 127.0.0.1 and ::1.
func EnsureLocalCertificate(dir, hostname string, now time.Time) (certFile, keyFile string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("tls: %w", err)
	}
	caCert, caKey, err := loadOrMakeCA(dir, now)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if leafIsGood(certFile, keyFile, caCert, hostname, now) {
		return certFile, keyFile, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	dns := []string{"localhost"}
	var ips []net.IP
	if ip := net.ParseIP(hostname); ip != nil {
		ips = append(ips, ip)
	} else if hostname != "localhost" {
		dns = append([]string{hostname}, dns...)
	}
	ips = append(ips, net.IPv4(127, 0, 0, 1), net.IPv6loopback)
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"sealpost"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(397 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("tls: make server certificate: %w", err)
	}
	if err := writePEM(keyFile, "PRIVATE KEY", mustPKCS8(key), 0o600); err != nil {
		return "", "", err
	}
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func loadOrMakeCA(dir string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if c, k, err := loadCA(certPath, keyPath); err == nil && now.Before(c.NotAfter.Add(-30*24*time.Hour)) {
		return c, k, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("tls: local CA in %s: %w", dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "sealpost local CA", Organization: []string{"sealpost"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: make local CA: %w", err)
	}
	if err := writePEM(keyPath, "PRIVATE KEY", mustPKCS8(key), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func loadCA(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, nil, errors.New("not a sealpost CA")
	}
	return cert, key, nil
}

func leafIsGood(certFile, keyFile string, ca *x509.Certificate, hostname string, now time.Time) bool {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || leaf.IsCA || leaf.CheckSignatureFrom(ca) != nil {
		return false
	}
	if now.After(leaf.NotAfter.Add(-30*24*time.Hour)) || leaf.VerifyHostname(hostname) != nil {
		return false
	}
	return slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func mustPKCS8(k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err)
	}
	return b
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	if err := fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	return nil
}

// ServerTLS loads the certificate for every listener with TLS: submission
// (STARTTLS and implicit), autoconfig over HTTPS and the archive's IMAP view
// all take their settings from here. The files are read again when they
// change (a renewal by certbot needs no restart). TLS 1.0 and 1.1 are
// refused, and TLS 1.2 offers only serverSuites.
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.load(); err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: serverSuites, GetCertificate: r.get}, nil
}

// serverSuites are TLS 1.2's suites with forward secrecy (ECDHE) and
// authenticated encryption (AES-GCM, ChaCha20-Poly1305): Go's defaults also
// offer CBC with SHA-1 (Lucky13-style padding oracles; SHA-1 MACs). Every
// client sealpost serves (Thunderbird, Outlook on Windows 10 and later,
// Apple Mail, Go, OpenSSL 1.0.1 and later) has these. TLS 1.3's suites are
// all of this kind and not configurable.
var serverSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

type certReloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	modTime           time.Time
	checked           time.Time
}

func (r *certReloader) load() (*tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s: %w", r.certFile, err)
	}
	fi, err := os.Stat(r.certFile)
	if err != nil {
		return nil, err
	}
	r.cert, r.modTime = &pair, fi.ModTime()
	return r.cert, nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) > time.Minute {
		r.checked = time.Now()
		if fi, err := os.Stat(r.certFile); err == nil && !fi.ModTime().Equal(r.modTime) {
			if _, err := r.load(); err != nil {
				// Keep serving the certificate we have rather than none.
				return r.cert, nil
			}
		}
	}
	return r.cert, nil
}

// ClientTLS is the configuration for talking to the provider: verified
// against the system roots, or against caFile for a private CA.
func ClientTLS(serverName, caFile string) (*tls.Config, error) {
	conf := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("upstream ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream ca_file %s holds no PEM certificate", caFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}
