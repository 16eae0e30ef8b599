package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/archive/offsite"
	"github.com/sealpost/sealpost/internal/testutil"
)

// s3Bench is BenchmarkVersusPostfix's relay for the "+ S3 upload" row: the
// same relay copying its record into a private versitygw on this machine,
// with 4 MiB segments (sealed and uploaded every few seconds at full
// speed, where the default 64 MiB would seal none in a run) and the tail
// every 5 s (the default is 5 minutes): the uploads run while mail is
// accepted, as they would on a busy day.
type s3Bench struct {
	r       *Relay
	s3      *testutil.S3Server
	bucket  string
	metrics string
}

func startS3Bench(b *testing.B, sink *Sink) *s3Bench {
	b.Helper()
	s := &s3Bench{s3: testutil.StartVersityGW(b), metrics: fmt.Sprintf("127.0.0.1:%d", FreePort(b))}
	s.bucket = s.s3.NewBucket()
	access, secret := s.s3.WriteKeys(b.TempDir())
	s.r = StartRelay(b, RelayOptions{Sink: sink, Quiet: true, Binary: SealpostTestClock(b), Env: []string{fmt.Sprintf("SEALPOST_TEST_SEGMENT_BYTES=%d", 4<<20)},
		Sections: fmt.Sprintf("[metrics]\nlisten = %q\n[archive.s3]\nendpoint = %q\nbucket = %q\nregion = \"us-east-1\"\naccess_key_file = %q\nsecret_key_file = %q\ntail_interval = \"5s\"\n",
			s.metrics, s.s3.Endpoint, s.bucket, access, secret)})
	return s
}

// caughtUp says how far behind the upload was when the run ended, then
// waits (outside the measured time) until the bucket holds the archive as
// it is on disk: the newest segment sealed and uploaded, or its newest
// tail object as long as it is.
func (s *s3Bench) caughtUp(b *testing.B, run int) {
	b.Helper()
	lag, pending := uploadMetrics(b, s.metrics)
	end := time.Now()
	testutil.WaitWithin(b, 5*time.Minute, "the S3 upload to catch up", func() bool { return s.uploadedAll(b) })
	sealed := 0
	for o := range s.s3.Client().ListObjects(context.Background(), s.bucket, minio.ListObjectsOptions{Prefix: "main/archive/seg-", Recursive: true}) {
		if o.Err == nil {
			sealed++
		}
	}
	fmt.Fprintf(os.Stderr, "run %d, S3 upload: %d object(s) waiting and %.1f s behind (as of the uploader's last look) when the last message reached the sink; all in the bucket %.1f s later; %d sealed segments in the bucket\n",
		run+1, pending, lag, time.Since(end).Seconds(), sealed)
}

// uploadedAll says whether the uploader's state file covers the archive's
// newest segment as far as its last whole record.
func (s *s3Bench) uploadedAll(b *testing.B) bool {
	dir := filepath.Join(s.r.DataDir, "archive")
	segs, err := archive.Segments(dir)
	if err != nil || len(segs) == 0 {
		b.Fatalf("the archive's segments: %v", err)
	}
	newest := segs[len(segs)-1]
	info, err := archive.ReadSegmentInfo(dir, newest)
	if err != nil {
		b.Fatal(err)
	}
	var st struct {
		Objects map[string]json.RawMessage `json:"objects"`
		Tail    struct {
			Segment string `json:"segment"`
			Size    int64  `json:"size"`
		} `json:"tail"`
	}
	raw, err := os.ReadFile(filepath.Join(s.r.DataDir, offsite.StateFile))
	if err != nil || json.Unmarshal(raw, &st) != nil {
		return false
	}
	if info.Records == 0 && len(segs) > 1 {
		return st.Objects[segs[len(segs)-2]] != nil
	}
	return st.Objects[newest] != nil || st.Tail.Segment == newest && st.Tail.Size == info.Size
}
