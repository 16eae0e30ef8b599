package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var lanIP = net.ParseIP("192.168.1.10")

func practiceNames() Names {
	return PracticeNames("sealpost.practice.example", []string{"practice.example"}, []net.IP{lanIP})
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCertPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mint is what a thief with the CA's key would do: sign a certificate for
// names of their choosing.
func mint(t *testing.T, dir string, dns []string, ips []net.IP) *x509.Certificate {
	t.Helper()
	ca, caKey, err := loadCA(filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: dns, IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// TestLocalCAVouchesForThePracticeOnly: the server certificate names the
// hostname, autoconfig and autodiscover (Outlook's HTTPS autodiscover), the
// LAN address and loopback, and verifies for them; a certificate the CA's
// key signs for any other website or address does not verify, in Go and in
// OpenSSL; the CA lasts two years and its key is its owner's alone.
func TestLocalCAVouchesForThePracticeOnly(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	r, err := Renew(dir, practiceNames(), now)
	if err != nil {
		t.Fatal(err)
	}
	if !r.MadeCA || !r.CertRenewed || r.NewCA || r.NextCA != "" {
		t.Errorf("first run: %+v", r)
	}
	ca, leaf := readCert(t, filepath.Join(dir, CAFile)), readCert(t, filepath.Join(dir, CertFile))
	if life := ca.NotAfter.Sub(now); life > 731*24*time.Hour || life < 729*24*time.Hour {
		t.Errorf("the CA lasts %v, want two years", life)
	}
	if !ca.PermittedDNSDomainsCritical || len(ca.ExtKeyUsage) != 1 || ca.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("CA: constraints critical %v, key usages %v", ca.PermittedDNSDomainsCritical, ca.ExtKeyUsage)
	}
	if fi, _ := os.Stat(filepath.Join(dir, CAKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("ca-key.pem mode %v", fi.Mode())
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, name := range []string{"sealpost.practice.example", "autoconfig.practice.example", "autodiscover.practice.example", "localhost", "192.168.1.10", "127.0.0.1", "::1"} {
		opts.DNSName = name
		if _, err := leaf.Verify(opts); err != nil {
			t.Errorf("the server certificate does not verify for %s: %v", name, err)
		}
	}

	tests := []struct {
		name string
		dns  []string
		ips  []net.IP
	}{
		{"a bank's website", []string{"www.bank.example"}, nil},
		{"the practice's own website", []string{"www.practice.example"}, nil},
		{"the provider", []string{"smtp.office365.com"}, nil},
		{"the router on the LAN", nil, []net.IP{net.ParseIP("192.168.1.1")}},
		{"a public address", nil, []net.IP{net.ParseIP("203.0.113.7")}},
		{"a permitted name beside a foreign one", []string{"sealpost.practice.example", "login.bank.example"}, nil},
	}
	openssl, _ := exec.LookPath("openssl")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evil := mint(t, dir, tc.dns, tc.ips)
			opts.DNSName = ""
			_, err := evil.Verify(opts)
			if _, isConstraint := err.(x509.CertificateInvalidError); !isConstraint || !strings.Contains(err.Error(), "constraint") {
				t.Errorf("Go verified a certificate for %v %v signed by the local CA: %v", tc.dns, tc.ips, err)
			}
			if openssl == "" {
				return
			}
			p := filepath.Join(t.TempDir(), "evil.pem")
			os.WriteFile(p, certPEM(evil.Raw), 0o644)
			out, err := exec.Command(openssl, "verify", "-CAfile", filepath.Join(dir, CAFile), p).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "permitted subtree violation") {
				t.Errorf("openssl verify: %v\n%s", err, out)
			}
		})
	}
	if openssl != "" {
		out, err := exec.Command(openssl, "verify", "-purpose", "sslserver", "-CAfile", filepath.Join(dir, CAFile), filepath.Join(dir, CertFile)).CombinedOutput()
		if err != nil {
			t.Errorf("openssl does not verify the server certificate: %v\n%s", err, out)
		}
	}
}

// TestRenewRollsOver: the certificate is renewed a month before it ends; a
// new CA is made three months before the old one ends and takes over two
// months later, at the certificate's renewal; a changed hostname needs a new
// CA at once; a CA from an older sealpost (no constraints) is replaced, but
// only after therapists had two months to import the new one. Replaced
// files keep their mode.
func TestRenewRollsOver(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now()
	names := practiceNames()
	if _, err := Renew(dir, names, t0); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, KeyFile), 0o640) // init shares it with the service's group
	day := 24 * time.Hour
	steps := []struct {
		at                         time.Duration
		renewed, next, newCA, same bool
	}{
		{10 * day, false, false, false, true},
		{368 * day, true, false, false, true}, // a month before the first certificate ends
		{400 * day, false, false, false, true},
		{641 * day, false, true, false, true}, // three months before the CA ends
		{660 * day, false, true, false, true},
		{701 * day, true, false, true, false}, // the certificate's renewal: the new CA takes over
	}
	firstCA := readCert(t, filepath.Join(dir, CAFile))
	for _, s := range steps {
		r, err := Renew(dir, names, t0.Add(s.at))
		if err != nil {
			t.Fatal(err)
		}
		sameCA := readCert(t, filepath.Join(dir, CAFile)).Equal(firstCA)
		if r.CertRenewed != s.renewed || (r.NextCA != "") != s.next || r.NewCA != s.newCA || sameCA != s.same {
			t.Errorf("day %d: renewed %v, next CA %q, new CA %v, same CA %v; want %v %v %v %v", s.at/day, r.CertRenewed, r.NextCA, r.NewCA, sameCA,
				s.renewed, s.next, s.newCA, s.same)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, KeyFile)); fi.Mode().Perm() != 0o640 {
		t.Errorf("key.pem's mode became %v", fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(dir, PreviousCAFile)); err != nil {
		t.Error("the old CA certificate was not kept as ca-previous.pem")
	}

	r, err := Renew(dir, PracticeNames("mail.practice.example", []string{"practice.example"}, []net.IP{lanIP}), t0.Add(702*day))
	if err != nil || !r.NewCA || !r.CertRenewed || !strings.Contains(r.Why, "cannot vouch for every name") {
		t.Errorf("a new hostname: %+v, %v", r, err)
	}
	// A second domain: its autoconfig names wait for a CA therapists have
	// imported; the server keeps its certificate meanwhile.
	more := PracticeNames("mail.practice.example", []string{"practice.example", "second.example"}, []net.IP{lanIP})
	r, err = Renew(dir, more, t0.Add(703*day))
	if err != nil || r.NewCA || r.CertRenewed || r.NextCA == "" {
		t.Errorf("a second domain: %+v, %v", r, err)
	}
}

// TestRenewReplacesUnconstrainedCA: the CA of an older sealpost (ten years,
// no name constraints) gets a successor at once, which takes over two
// months later, not before: mail clients keep working meanwhile.
func TestRenewReplacesUnconstrainedCA(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now()
	old := PracticeNames("sealpost.practice.example", nil, nil)
	ca, key, err := newCA(old, t0)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *ca
	tmpl.PermittedDNSDomains, tmpl.PermittedIPRanges, tmpl.PermittedEmailAddresses, tmpl.PermittedURIDomains = nil, nil, nil, nil
	tmpl.PermittedDNSDomainsCritical, tmpl.ExtKeyUsage, tmpl.NotAfter = false, nil, t0.Add(10*365*24*time.Hour)
	der, _ := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	os.WriteFile(filepath.Join(dir, CAFile), certPEM(der), 0o644)
	os.WriteFile(filepath.Join(dir, CAKeyFile), keyPEM(key), 0o600)

	r, err := Renew(dir, practiceNames(), t0)
	if err != nil || r.NewCA || r.NextCA == "" || !strings.Contains(r.Why, "without name constraints") || !r.CertRenewed {
		t.Fatalf("first renewal: %+v, %v", r, err)
	}
	if got := r.NextCAFrom.Sub(t0).Round(time.Hour); got != caHandover {
		t.Errorf("the new CA takes over after %v, want %v", got, caHandover)
	}
	r, err = Renew(dir, practiceNames(), t0.Add(caHandover+time.Hour))
	if err != nil || r.NewCA {
		t.Errorf("with the certificate not due the old CA stays: %+v, %v", r, err)
	}
	r, err = Renew(dir, practiceNames(), t0.Add(370*24*time.Hour))
	if err != nil || !r.NewCA || !constrained(readCert(t, filepath.Join(dir, CAFile))) {
		t.Errorf("at the certificate's renewal the constrained CA takes over: %+v, %v", r, err)
	}
}

// TestLocalCAForAnInternationalisedDomain: a practice whose domain is
// internationalised gets a CA and certificate naming its A-labels (the
// relay would not start: a certificate cannot carry U-labels), and a
// client that connects to the name as typed, converted as every client
// does, verifies it.
func TestLocalCAForAnInternationalisedDomain(t *testing.T) {
	names := PracticeNames("mail.bücher.example", []string{"bücher.example"}, nil)
	iss, err := NewLocalCA(names, time.Now())
	if err != nil {
		t.Fatalf("a local CA for bücher.example: %v", err)
	}
	ca, err := parseCertPEM(iss.CA)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseCertPEM(iss.Cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, name := range []string{"mail.xn--bcher-kva.example", "autoconfig.xn--bcher-kva.example", "autodiscover.xn--bcher-kva.example"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("the certificate does not verify for %s: %v", name, err)
		}
	}
}
