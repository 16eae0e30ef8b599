// Package testutil holds what tests of several packages need: waiting for a
// condition with a deadline, a buffer goroutines may write while a test
// reads, a local certificate authority, and OpenPGP keys.
package testutil

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealpost/sealpost/internal/tlsconf"
)

// WaitFor polls cond until it holds, and fails the test when it has not
// within ten seconds: tests wait on what they expect, never for a time.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitWithin(t, 10*time.Second, what, cond)
}

// WaitWithin is WaitFor with a deadline of its own, for real programs that
// take longer (a Postfix that starts, a queue that drains).
func WaitWithin(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// LockedBuffer collects output (a log, a child's stderr) that is written
// while a test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// PKI is a local certificate authority and a server certificate for
// localhost and 127.0.0.1, made by the code sealpost uses on first start.
type PKI struct {
	Dir        string
	CertFile   string // the server certificate
	KeyFile    string
	CAFile     string // ca.pem: what clients import
	Pool       *x509.CertPool
	ServerTLS  *tls.Config
	ServerName string
}

// NewPKI makes a PKI in a folder of the test's.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	cert, key, err := tlsconf.EnsureLocalCertificate(dir, "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	conf, err := tlsconf.ServerTLS(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{Dir: dir, CertFile: cert, KeyFile: key, CAFile: caFile, Pool: pool, ServerTLS: conf, ServerName: "localhost"}
}

// ClientTLS trusts the PKI's authority, as a mail client that imported ca.pem.
func (p *PKI) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.Pool, ServerName: p.ServerName}
}

var (
	keysMu sync.Mutex
	keys   = map[string]*openpgp.Entity{}
)

// OpenPGPKey returns an Ed25519/X25519 key for email, made once per test
// binary: key generation is the slow part of many tests.
func OpenPGPKey(t testing.TB, name, email string) *openpgp.Entity {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if e, ok := keys[email]; ok {
		return e
	}
	e, err := openpgp.NewEntity(name, "", email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	keys[email] = e
	return e
}

// ArmoredPublicKey is e's public key as `gpg --armor --export` writes it.
func ArmoredPublicKey(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
