// Package tlsconf makes the TLS settings every listener and every client of
// sealpost uses, in one place, and the local certificate authority and server
// certificate a practice without its own certificate starts with.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

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
