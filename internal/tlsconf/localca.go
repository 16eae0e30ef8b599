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
	"strings"
	"time"

	"golang.org/x/net/idna"
)

// The local CA is what therapists' machines are asked to trust. It is
// constrained to the practice's own names and addresses (RFC 5280 name
// constraints, critical): a copy of its key, on a stolen server, cannot make
// a certificate for any other website or mail server that those machines
// would accept. It signs server certificates only (its extended key usage),
// and no mailbox or URI at all.
const (
	caLifetime = 2 * 365 * 24 * time.Hour
	// A new CA is made this long before the old one ends, or at once when
	// the old one cannot vouch for the names (made by an older sealpost, or
	// the hostname changed); it signs the server certificate once it is
	// caHandover old, so that therapists have that long to import it.
	caRollover = 90 * 24 * time.Hour
	caHandover = 60 * 24 * time.Hour
	// Server certificates: the most browsers accept, renewed a month early.
	leafLifetime = 397 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
)

// The files of a local CA's folder.
const (
	CAFile         = "ca.pem"
	CAKeyFile      = "ca-key.pem"
	NextCAFile     = "ca-next.pem"
	nextCAKeyFile  = "ca-next-key.pem"
	PreviousCAFile = "ca-previous.pem"
	CertFile       = "cert.pem"
	KeyFile        = "key.pem"
)

// noMailbox is the one name a local CA permits for mailboxes and URIs: a
// domain that cannot exist (RFC 2606), so it vouches for none.
const noMailbox = "invalid"

// Names are the practice's names and addresses: what its local CA may vouch
// for and what its server certificate names.
type Names struct {
	DNS []string
	IPs []net.IP
}

// PracticeNames are hostname (a name or an address), autoconfig.DOMAIN and
// autodiscover.DOMAIN for each of domains (the names mail clients look up to
// set themselves up; Outlook's over HTTPS), localhost, the loopback
// addresses, and ips (the addresses on the practice's network that mail
// clients may use instead of the name).
func PracticeNames(hostname string, domains []string, ips []net.IP) Names {
	var n Names
	addDNS := func(s string) {
		// A certificate names an internationalised domain by its A-labels
		// (RFC 5280 7.2); one that has none cannot be named at all.
		s, err := idna.Lookup.ToASCII(strings.TrimSuffix(s, "."))
		if err != nil {
			return
		}
		s = strings.ToLower(s)
		if s != "" && !slices.Contains(n.DNS, s) {
			n.DNS = append(n.DNS, s)
		}
	}
	addIP := func(ip net.IP) {
		if ip == nil {
			return
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if !slices.ContainsFunc(n.IPs, ip.Equal) {
			n.IPs = append(n.IPs, ip)
		}
	}
	if ip := net.ParseIP(hostname); ip != nil {
		addIP(ip)
	} else {
		addDNS(hostname)
	}
	for _, d := range domains {
		addDNS("autoconfig." + d)
		addDNS("autodiscover." + d)
	}
	addDNS("localhost")
	addIP(net.IPv4(127, 0, 0, 1))
	addIP(net.IPv6loopback)
	for _, ip := range ips {
		addIP(ip)
	}
	return n
}

// Issued is a new local CA and the server certificate it signed, as PEM,
// for a caller that writes them itself (sealpost init).
type Issued struct {
	CA, CAKey, Cert, Key []byte
	CAExpires, Expires   time.Time
}

// NewLocalCA makes a local CA constrained to names and a server certificate
// for them.
func NewLocalCA(names Names, now time.Time) (*Issued, error) {
	ca, caKey, err := newCA(names, now)
	if err != nil {
		return nil, err
	}
	cert, key, err := issueServer(ca, caKey, names, now)
	if err != nil {
		return nil, err
	}
	leaf, _ := parseCertPEM(cert)
	return &Issued{CA: certPEM(ca.Raw), CAKey: keyPEM(caKey), Cert: cert, Key: key, CAExpires: ca.NotAfter, Expires: leaf.NotAfter}, nil
}

func newCA(names Names, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:                randomSerial(),
		Subject:                     pkix.Name{CommonName: "sealpost local CA for " + names.first(), Organization: []string{"sealpost"}},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(caLifetime),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:                 []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         names.DNS,
		PermittedEmailAddresses:     []string{noMailbox},
		PermittedURIDomains:         []string{noMailbox},
	}
	for _, ip := range names.IPs {
		bits := 8 * len(ip)
		tmpl.PermittedIPRanges = append(tmpl.PermittedIPRanges, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: make local CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// issueServer makes a server certificate for names signed by ca: a leaf
// (Thunderbird refuses a server certificate that is itself a CA) that ends
// no later than ca.
func issueServer(ca *x509.Certificate, caKey *ecdsa.PrivateKey, names Names, now time.Time) (certPEMBytes, keyPEMBytes []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: names.first(), Organization: []string{"sealpost"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              minTime(now.Add(leafLifetime), ca.NotAfter),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              names.DNS,
		IPAddresses:           names.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: make server certificate: %w", err)
	}
	return certPEM(der), keyPEM(key), nil
}

// first is the name a certificate is known by: the hostname.
func (n Names) first() string {
	h := n.hostname()
	if len(h.DNS) > 0 {
		return h.DNS[0]
	}
	return h.IPs[0].String()
}

// permittedBy says whether ca's name constraints allow every one of the
// names; a CA without constraints (made by an older sealpost) allows them,
// but is not one to keep (Renew rolls it over).
func (n Names) permittedBy(ca *x509.Certificate) bool {
	if !constrained(ca) {
		return true
	}
	for _, d := range n.DNS {
		if !slices.ContainsFunc(ca.PermittedDNSDomains, func(c string) bool { return d == c || strings.HasSuffix(d, "."+c) }) {
			return false
		}
	}
	for _, ip := range n.IPs {
		if !slices.ContainsFunc(ca.PermittedIPRanges, func(r *net.IPNet) bool { return r.Contains(ip) }) {
			return false
		}
	}
	return true
}

// within is the names ca may vouch for: all of them when it has no
// constraints.
func (n Names) within(ca *x509.Certificate) Names {
	var out Names
	for _, d := range n.DNS {
		if (Names{DNS: []string{d}}).permittedBy(ca) {
			out.DNS = append(out.DNS, d)
		}
	}
	for _, ip := range n.IPs {
		if (Names{IPs: []net.IP{ip}}).permittedBy(ca) {
			out.IPs = append(out.IPs, ip)
		}
	}
	return out
}

// hostname is the name a certificate is known by, alone.
func (n Names) hostname() Names {
	if len(n.DNS) > 0 && (len(n.IPs) == 0 || n.DNS[0] != "localhost") {
		return Names{DNS: n.DNS[:1]}
	}
	if len(n.IPs) > 0 {
		return Names{IPs: n.IPs[:1]}
	}
	return Names{DNS: []string{"localhost"}}
}

// namedBy says whether leaf names every one of the names.
func (n Names) namedBy(leaf *x509.Certificate) bool {
	for _, d := range n.DNS {
		if !slices.Contains(leaf.DNSNames, d) {
			return false
		}
	}
	for _, ip := range n.IPs {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func constrained(ca *x509.Certificate) bool {
	return ca.PermittedDNSDomainsCritical && len(ca.PermittedDNSDomains) > 0
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// loadCA reads a CA certificate and its key from the folder.
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

// CertificateExpiry is when the first certificate in a PEM file ends.
func CertificateExpiry(path string) (time.Time, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, err
	}
	c, err := parseCertPEM(b)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	return c.NotAfter, nil
}

// CertificateNames are the DNS names and addresses the first certificate
// of a PEM file names.
func CertificateNames(pemBytes []byte) ([]string, error) {
	c, err := parseCertPEM(pemBytes)
	if err != nil {
		return nil, err
	}
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names, nil
}

// LocalCADir is the folder of the local CA that signed the certificate in
// certFile, when sealpost made it (init, or the first start): the CA beside
// it. ok is false for a certificate from elsewhere (a public CA).
func LocalCADir(certFile string) (dir string, ok bool) {
	dir = filepath.Dir(certFile)
	b, err := os.ReadFile(certFile)
	if err != nil {
		return dir, false
	}
	leaf, err := parseCertPEM(b)
	if err != nil {
		return dir, false
	}
	cb, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return dir, false
	}
	ca, err := parseCertPEM(cb)
	return dir, err == nil && leaf.CheckSignatureFrom(ca) == nil
}
