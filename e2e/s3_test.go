package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sealpost/sealpost/internal/testutil"
)

// s3Relay is a relay copying its record into a bucket of a private
// versitygw, with segments small enough to be sealed while a test runs.
type s3Relay struct {
	*Relay
	s3      *testutil.S3Server
	bucket  string
	metrics string
	s3TOML  string
}

func startS3Relay(t *testing.T) *s3Relay {
	t.Helper()
	s3 := testutil.StartVersityGW(t)
	r := &s3Relay{s3: s3, bucket: s3.NewBucket(), metrics: fmt.Sprintf("127.0.0.1:%d", FreePort(t))}
	access, secret := s3.WriteKeys(t.TempDir())
	r.s3TOML = fmt.Sprintf("[archive]\nnode = \"a\"\n[archive.s3]\nendpoint = %q\nbucket = %q\nregion = \"us-east-1\"\naccess_key_file = %q\nsecret_key_file = %q\ntail_interval = \"1s\"\n",
		s3.Endpoint, r.bucket, access, secret)
	r.Relay = StartRelay(t, RelayOptions{Binary: SealpostTestClock(t), Env: []string{"SEALPOST_TEST_SEGMENT_BYTES=6000"},
		Sections: fmt.Sprintf("[metrics]\nlisten = %q\n", r.metrics) + r.s3TOML})
	return r
}

var metricLine = regexp.MustCompile(`(?m)^(sealpost_archive_upload_\w+) (\S+)$`)

// upload is the relay's off-site lag and backlog, from /metrics.
func (r *s3Relay) upload(t *testing.T) (lag float64, pending int) {
	t.Helper()
	return uploadMetrics(t, r.metrics)
}

// uploadMetrics reads the off-site upload's lag and backlog from the
// /metrics at addr.
func uploadMetrics(t testing.TB, addr string) (lag float64, pending int) {
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
	found := 0
	for _, m := range metricLine.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[1] {
		case "sealpost_archive_upload_lag_seconds":
			lag, found = v, found+1
		case "sealpost_archive_upload_pending_objects":
			pending, found = int(v), found+1
		}
	}
	if found != 2 {
		t.Fatalf("/metrics lacks the upload's lag or pending objects:\n%s", b)
	}
	return lag, pending
}

// send submits one message to a colleague and returns its id.
func (r *s3Relay) send(t *testing.T, i int) string {
	t.Helper()
	out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--header", fmt.Sprintf("Subject: Case conference %d", i),
		"--body", strings.Repeat(fmt.Sprintf("Notes for the case conference, part %d. ", i), 20))...)
	if !ok || !strings.Contains(out, "250 2.0.0 OK: queued as ") {
		t.Fatalf("message %d was not accepted:\n%s", i, out)
	}
	return queuedID(t, out)
}

// TestS3OffsiteCopy: the relay copies its record into an S3 bucket with
// Object Lock while it accepts mail. With the S3 server stopped every
// message still gets its 250 and the backlog shows in /metrics; started
// again, the backlog is uploaded. Then the node's data_dir is lost:
// `archive restore --s3` brings its record back, verified, and an export
// of it holds every message; `archive verify --s3` from a configuration
// holding [archive.s3] alone, with read-only keys, passes.
func TestS3OffsiteCopy(t *testing.T) {
	r := startS3Relay(t)
	out, errOut, code := r.Run(t, "", "check")
	if code != 0 || !strings.Contains(out, "the off-site copy of node a's record in "+r.s3.Endpoint+" (bucket "+r.bucket+") has Object Lock on") ||
		!strings.Contains(out, "WARN archive.s3.endpoint "+r.s3.Endpoint) {
		t.Fatalf("sealpost check: exit %d\n%s%s", code, out, errOut)
	}
	var ids []string
	for i := range 3 {
		ids = append(ids, r.send(t, i))
	}
	testutil.WaitWithin(t, 30*time.Second, "the first messages in the bucket", func() bool {
		_, pending := r.upload(t)
		return pending == 0 && countObjects(t, r, "a/archive/seg-") > 0
	})

	r.s3.Stop()
	for i := 3; i < 12; i++ {
		ids = append(ids, r.send(t, i))
	}
	testutil.WaitWithin(t, 30*time.Second, "the backlog to show while S3 is down", func() bool {
		lag, pending := r.upload(t)
		return lag > 1 && pending >= 2
	})
	if code, body := get(t, "http://"+r.metrics+"/readyz"); code != 200 {
		t.Fatalf("/readyz while S3 is down: %d %s (the relay still takes mail and keeps it)", code, body)
	}
	if out, errOut, code := r.Run(t, "", "status"); code != 0 || !strings.Contains(out, "off-site copy") || !strings.Contains(out, "does not answer: ") {
		t.Fatalf("sealpost status while S3 is down: exit %d\n%s%s", code, out, errOut)
	}
	r.s3.Start()
	testutil.WaitWithin(t, 60*time.Second, "the backlog to be uploaded once S3 is back", func() bool {
		lag, pending := r.upload(t)
		return pending == 0 && lag == 0
	})
	sealed := countObjects(t, r, "a/archive/seg-")
	t.Logf("%d messages, %d sealed segments in the bucket", len(ids), sealed)
	if sealed < 3 {
		t.Fatalf("only %d sealed segments in the bucket after %d messages", sealed, len(ids))
	}

	// The server's disk dies: only the archive key, kept offline, remains.
	key := filepath.Join(t.TempDir(), "archive-private-key.asc")
	b, err := os.ReadFile(filepath.Join(r.DataDir, "archive-private-key.asc"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(key, b, 0o600)
	r.Stop(t)
	if err := os.RemoveAll(r.DataDir); err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(t.TempDir(), "restored")
	out, errOut, code = r.Run(t, "", "archive", "restore", "--s3", "--to", restored)
	if code != 0 || !strings.Contains(out, "The restored archive verifies") || !strings.Contains(out, "Restored node a from") {
		t.Fatalf("archive restore --s3: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("archive restore --s3:\n%s", out)
	exp := filepath.Join(t.TempDir(), "export")
	if out, errOut, code := runSealpost(t, r.bin, "archive", "export", "--verify", "--archive", filepath.Join(restored, "archive"), "--key", key, "--out", exp); code != 0 {
		t.Fatalf("export of the restored archive: exit %d\n%s%s", code, out, errOut)
	}
	var m struct {
		Messages []struct {
			ID string `json:"id"`
		} `json:"messages"`
	}
	mb, err := os.ReadFile(filepath.Join(exp, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, msg := range m.Messages {
		have[msg.ID] = true
	}
	for _, id := range ids {
		if !have[id] {
			t.Errorf("message %s (accepted with a 250) is not in the export of the restored archive", id)
		}
	}

	// An auditor's configuration: [archive.s3] alone, with keys that may
	// only list and read the bucket.
	home := t.TempDir()
	access, secret := r.s3.ReadOnlyUser(r.bucket)
	os.WriteFile(filepath.Join(home, "ak"), []byte(access+"\n"), 0o600)
	os.WriteFile(filepath.Join(home, "sk"), []byte(secret+"\n"), 0o600)
	auditor := filepath.Join(home, "auditor.toml")
	os.WriteFile(auditor, []byte(fmt.Sprintf("[archive.s3]\nendpoint = %q\nbucket = %q\nregion = \"us-east-1\"\naccess_key_file = \"ak\"\nsecret_key_file = \"sk\"\n",
		r.s3.Endpoint, r.bucket)), 0o600)
	out, errOut, code = runSealpost(t, r.bin, "archive", "verify", "--s3", "-c", auditor)
	if code != 0 || !strings.Contains(out, "Node a: downloading its whole chain") || !strings.Contains(out, "The chain of node a verifies.") {
		t.Fatalf("archive verify --s3 with an auditor's configuration: exit %d\n%s%s", code, out, errOut)
	}
}

func countObjects(t *testing.T, r *s3Relay, prefix string) int {
	t.Helper()
	n := 0
	for o := range r.s3.Client().ListObjects(context.Background(), r.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		n++
	}
	return n
}

// runSealpost runs a sealpost command as it is given (no -c added).
func runSealpost(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCommand(t, exec.Command(bin, args...), "")
}
