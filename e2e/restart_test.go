package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// restartWithQueue fills the queue with n messages while the provider is
// down, restarts sealpost, and returns how long the restart took until it
// accepted mail again and until the queue had drained into the sink.
func restartWithQueue(t testing.TB, n int) (accepting, drained time.Duration) {
	sink := StartSink(t)
	r := StartRelay(t, RelayOptions{Sink: sink, Quiet: true, RetryMin: "1s"})
	sink.Stop()
	load := &Load{Addr: r.Submission, CAFile: r.CA, User: User, Pass: Password, From: From,
		To: "colleague@practice.example", Sessions: 20, PerSession: 200, Prefix: "restart"}
	load.Run(context.Background(), n)
	if acked := len(load.Acked()); acked != n {
		t.Fatalf("%d of %d accepted: %v", acked, n, load.Errors())
	}
	r.Stop(t)
	sink.Start(t)
	start := time.Now()
	r.Start(t)
	if out, ok := Swaks(t, r.SwaksArgs("--to", "colleague@practice.example", "--header", "Subject: after the restart")...); !ok {
		t.Fatalf("not accepting after the restart:\n%s", out)
	}
	accepting = time.Since(start)
	testutil.WaitWithin(t, 30*time.Minute, "the queue to drain", func() bool {
		ents, _ := os.ReadDir(sink.Dir)
		return len(ents) >= n+1
	})
	drained = time.Since(start)
	testutil.WaitWithin(t, time.Minute, "an empty queue", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list")
		return out == "The queue is empty.\n"
	})
	if got := len(sink.Messages(t)); got != n+1 {
		t.Fatalf("the sink has %d messages, want %d: each exactly once", got, n+1)
	}
	return accepting, drained
}

// TestRestartWithQueue: a restart with a full queue accepts mail at once
// and delivers everything queued, once.
func TestRestartWithQueue(t *testing.T) {
	accepting, drained := restartWithQueue(t, envInt("SEALPOST_RESTART_MESSAGES", 2000))
	t.Logf("accepting again %v after the start; queue drained after %v", accepting, drained)
}

// BenchmarkRestartWith50000Queued is issue 8's figure: 50,000 queued.
//
//	go test ./e2e -run '^$' -bench RestartWith50000Queued -benchtime 1x -timeout 60m
func BenchmarkRestartWith50000Queued(b *testing.B) {
	accepting, drained := restartWithQueue(b, envInt("SEALPOST_RESTART_MESSAGES", 50000))
	b.ReportMetric(accepting.Seconds(), "s-to-accepting")
	b.ReportMetric(drained.Seconds(), "s-to-drained")
}
