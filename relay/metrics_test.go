package relay

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
)

// TestMetrics drives a session through what an operator watches for and
// reads the counters back as Prometheus scrapes them.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	r := startRelay(t, relayOpts{metrics: m})
	r.policy.decide = func(rcpt string) (record.Decision, error) {
		n, _ := addr.Normalize(rcpt)
		if strings.HasPrefix(n, "client") {
			return record.Decision{Address: n, Protection: record.Refused, Reason: "<" + n + "> has no key and no consent"}, nil
		}
		return record.Decision{Address: n, Protection: record.Internal}, nil
	}

	bad := r.dial(t)
	if err := bad.Auth(sasl.NewPlainClient("", testUser, "wrong")); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	c := r.login(t)
	if err := c.Mail(testFrom, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("client-secret-marker@example.org", nil); err == nil {
		t.Fatal("the refused recipient was accepted")
	}
	c.Reset()
	if err := send(c, testFrom, []string{"colleague@practice.example"}, testMessage(testFrom, "colleague@practice.example", "m", "x")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the delivery", func() bool { return counter(t, reg, "sealpost_deliveries_total") == 1 })
	big := testMessage(testFrom, "colleague@practice.example", "big", strings.Repeat("0123456789abcdef\r\n", 1<<17))
	if err := send(c, testFrom, []string{"colleague@practice.example"}, big); smtpCode(err) != "552 5.3.4" {
		t.Fatalf("a message over the size limit: %v, want 552 5.3.4", err)
	}

	// A client that offers only TLS 1.1, and one that does not trust the
	// certificate: both handshakes fail and are counted.
	if _, err := tls.Dial("tcp", r.addrs.Submissions.String(), &tls.Config{RootCAs: r.pki.Pool, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Fatal("TLS 1.1 was accepted")
	}
	if _, err := tls.Dial("tcp", r.addrs.Submissions.String(), &tls.Config{ServerName: "localhost"}); err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
	if c, err := smtp.DialStartTLS(r.addrs.Submission.String(), &tls.Config{ServerName: "localhost"}); err == nil {
		err = c.Noop()
		c.Close()
		if err == nil {
			t.Fatal("STARTTLS with an untrusted certificate was accepted")
		}
	}
	// A good handshake that is not followed by SMTP (a monitoring probe) is no failure.
	ok, err := tls.Dial("tcp", r.addrs.Submissions.String(), &tls.Config{RootCAs: r.pki.Pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	ok.Close()
	testutil.WaitFor(t, "three failed handshakes", func() bool { return counter(t, reg, "sealpost_tls_handshake_failures_total") == 3 })

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	for _, want := range []string{
		`sealpost_messages_accepted_total 1`,
		`sealpost_auth_failures_total{reason="bad_credentials"} 1`,
		`sealpost_refusals_total{reason="bad_credentials",stage="auth"} 1`,
		`sealpost_refusals_total{reason="recipient_policy",stage="rcpt"} 1`,
		`sealpost_refusals_total{reason="too_big",stage="data"} 1`,
		`sealpost_deliveries_total 1`,
		"sealpost_tls_handshake_failures_total 3\n",
		`sealpost_queue_messages `,
		`sealpost_queue_oldest_age_seconds `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Labels are reasons, never addresses.
	if strings.Contains(text, "client-secret-marker") || strings.Contains(text, "example.org") {
		t.Errorf("/metrics names a client's address:\n%s", text)
	}
	if m.UpstreamLastOK().IsZero() {
		t.Error("a delivery into the outbox did not count as reaching the upstream")
	}
}

// counter reads the value of the counter called name from reg, as a
// scrape would.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}
