package e2e

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// consoleCertificate is the certificate the console at url serves, read
// without checking it (the test compares serial numbers).
func consoleCertificate(t *testing.T, url string) string {
	t.Helper()
	c, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestConsoleServesRenewedCertificate: the console serves the submission
// certificate, and a renewed one (sealpost tls renew, as the package's
// weekly timer runs it) within a minute or so, without a restart.
func TestConsoleServesRenewedCertificate(t *testing.T) {
	r, url := startConsoleRelay(t, RelayOptions{})
	smtp := consoleCertificate(t, "https://"+r.Submissions)
	first := consoleCertificate(t, url)
	if first != smtp {
		t.Fatalf("the console serves certificate %s, submission %s", first, smtp)
	}
	tlsDir := filepath.Join(r.DataDir, "tls")
	os.Remove(filepath.Join(tlsDir, "cert.pem"))
	if out, errOut, code := r.Run(t, "", "tls", "renew"); code != 0 {
		t.Fatalf("tls renew: exit %d\n%s%s", code, out, errOut)
	}
	// The listeners look at the certificate's file at most once a minute.
	testutil.WaitWithin(t, 90*time.Second, "the console serving the renewed certificate", func() bool { return consoleCertificate(t, url) != first })
	if got, smtp := consoleCertificate(t, url), consoleCertificate(t, "https://"+r.Submissions); got != smtp {
		t.Errorf("after the renewal the console serves %s, submission %s", got, smtp)
	}
}
