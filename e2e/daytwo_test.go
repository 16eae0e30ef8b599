package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricValue is the value of the first series of /metrics whose line
// starts with prefix; -1 when there is none.
func metricValue(text, prefix string) float64 {
	for line := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	return -1
}

// TestDayTwoCommands: what a Postfix admin expects on day two, with the
// built binary. /metrics has the build, the series alerts use at 0 before
// anything happened, the certificates' ends; while the provider is down,
// `sealpost status` shows the queue, today's refusal, the certificates and
// keys and the archive's verification on one screen; `queue retry --all`
// sends what waited as soon as the provider is back; stopped, status still
// answers from data_dir.
func TestDayTwoCommands(t *testing.T) {
	sink := StartSink(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	r := StartRelay(t, RelayOptions{Sink: sink, RetryMin: "1h", RetryMax: "1h", Sections: fmt.Sprintf("[metrics]\nlisten = %q\n", metrics)})

	out, _, code := r.Run(t, "", "version")
	if code != 0 || !regexp.MustCompile(`^sealpost \S+ \(commit \S+, go1\.`).MatchString(out) {
		t.Errorf("sealpost version: %d %q", code, out)
	}
	text := scrape(t, metrics)
	for _, want := range []string{
		`sealpost_build_info{commit=`,
		`sealpost_refusals_total{reason="storage_full",stage="data"} 0`,
		`sealpost_refusals_total{reason="recipient_policy",stage="rcpt"} 0`,
		`sealpost_auth_failures_total{reason="bad_credentials"} 0`,
		`sealpost_provider_last_success_timestamp_seconds 0`,
		`sealpost_certificate_expiry_timestamp_seconds{certificate="server",`,
		`sealpost_certificate_expiry_timestamp_seconds{certificate="local_ca",`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics at the start lacks %s", want)
		}
	}
	if v := metricValue(text, `sealpost_certificate_expiry_timestamp_seconds{certificate="server"`); v < float64(time.Now().Add(300*24*time.Hour).Unix()) {
		t.Errorf("the server certificate ends at %v", v)
	}

	sink.Stop()
	if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example")...); !ok {
		t.Fatalf("swaks:\n%s", out)
	}
	if out, ok := Swaks(t, r.SwaksArgs("--to", "client@example.org")...); ok || !strings.Contains(out, "550 5.7.1") {
		t.Fatalf("a client without consent was not refused:\n%s", out)
	}
	testutil.WaitFor(t, "the delivery attempt to fail", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list")
		return strings.Contains(out, "therapist") && !strings.Contains(out, "  0  ")
	})
	var status string
	testutil.WaitFor(t, "the relay's verification of the archive", func() bool {
		status, _, _ = r.Run(t, "", "status")
		return strings.Contains(status, "all well")
	})
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^relay +running since .* pid \d+`),
		regexp.MustCompile(`(?m)^queue +1 message\(s\), the oldest waiting \S+ \(sealpost queue list\)$`),
		regexp.MustCompile(`(?m)^refusals +1 today`),
		regexp.MustCompile(`(?m)^provider +` + regexp.QuoteMeta(sink.Addr()) + `, not reached since the start$`),
		regexp.MustCompile(`(?m)^certificate +` + regexp.QuoteMeta(r.DataDir) + `/tls/cert.pem, until \d{4}-\d\d-\d\d \(\d+ days\)$`),
		regexp.MustCompile(`(?m)^local CA +` + regexp.QuoteMeta(r.DataDir) + `/tls/ca.pem, until `),
		regexp.MustCompile(`(?m)^archive key +\S+archive-public-key.asc \([0-9A-F]{40}\), no expiry$`),
		regexp.MustCompile(`(?m)^archive +\d+ records; verified by the relay .* ago\): \d+ records up to #\d+ \w+, all well$`),
	} {
		if !want.MatchString(status) {
			t.Errorf("sealpost status lacks %s:\n%s", want, status)
		}
	}

	sink.Start(t)
	out, errOut, code := r.Run(t, "", "queue", "retry", "--all")
	if code != 0 || out != "1 message(s) will be tried again now.\n" {
		t.Fatalf("queue retry --all: %d %q %q", code, out, errOut)
	}
	testutil.WaitFor(t, "the message that waited to reach the provider", func() bool { return len(sink.Messages(t)) == 1 })
	testutil.WaitFor(t, "the provider's success in /metrics", func() bool {
		return metricValue(scrape(t, metrics), "sealpost_provider_last_success_timestamp_seconds") > float64(time.Now().Add(-time.Minute).Unix())
	})
	if text := scrape(t, metrics); metricValue(text, "sealpost_archive_verified_timestamp_seconds") <= 0 || metricValue(text, "sealpost_archive_verify_problems") != 0 {
		t.Errorf("the archive's verification is not in /metrics")
	}

	r.Stop(t)
	status, _, code = r.Run(t, "", "status")
	for _, want := range []string{`(?m)^relay +not running$`, `(?m)^queue +empty$`, `(?m)^refusals +1 today`, `, all well`, `WARN the relay is not running`} {
		if code != 0 || !regexp.MustCompile(want).MatchString(status) {
			t.Errorf("status with the relay stopped lacks %s:\n%s", want, status)
		}
	}
}
