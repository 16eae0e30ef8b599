package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// procStats reads a process's peak resident memory (VmHWM) and CPU time.
func procStats(pid int) (peakRSS int64, cpu time.Duration) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmHWM:") {
				f := strings.Fields(line)
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				peakRSS = kb * 1024
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	return
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkRelayThroughput is the relay's speed benchmark (issue 2): N
// sessions with STARTTLS and AUTH send M messages of 4 KB through sealpost
// into smtp-sink. It reports messages per second accepted and end to end,
// accept latency (end of DATA to 250) p50/p99, CPU per message and the
// relay's peak RSS. Run:
//
//	go test ./e2e -run '^$' -bench RelayThroughput -benchtime 1x
//
// SEALPOST_BENCH_SESSIONS and SEALPOST_BENCH_MESSAGES change N and M.
func BenchmarkRelayThroughput(b *testing.B) {
	sessions := envInt("SEALPOST_BENCH_SESSIONS", 20)
	total := envInt("SEALPOST_BENCH_MESSAGES", 10000)
	sink := StartSink(b)
	r := StartRelay(b, RelayOptions{Sink: sink, Quiet: true})
	load := &Load{Addr: r.Submission, CAFile: r.CA, User: User, Pass: Password, From: From,
		To: "colleague@practice.example", Sessions: sessions, PerSession: 100, Prefix: "bench"}
	_, cpu0 := procStats(r.Pid())
	b.ResetTimer()
	start := time.Now()
	load.Run(context.Background(), total)
	accepted := time.Since(start)
	n := len(load.Acked())
	testutil.WaitWithin(b, 10*time.Minute, "the sink to receive everything", func() bool {
		ents, _ := os.ReadDir(sink.Dir)
		return len(ents) >= n
	})
	endToEnd := time.Since(start)
	b.StopTimer()
	rss, cpu1 := procStats(r.Pid())
	if errs := load.Errors(); len(errs) > 0 || n != total {
		b.Fatalf("%d of %d accepted; client errors %v", n, total, errs)
	}
	b.ReportMetric(float64(n)/accepted.Seconds(), "accepted/s")
	b.ReportMetric(float64(n)/endToEnd.Seconds(), "end-to-end/s")
	b.ReportMetric(float64(load.Percentile(50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(load.Percentile(99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(n), "relay-cpu-µs/msg")
	b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MB")
}

// BenchmarkLargeMessageRSS sends one 50 MB message through the relay and
// reports the relay's peak RSS: bodies are streamed, never held whole.
func BenchmarkLargeMessageRSS(b *testing.B) {
	sink := StartSink(b)
	r := StartRelay(b, RelayOptions{Sink: sink, Quiet: true, Sections: ""})
	// The e2e relay allows 10 MiB; this one needs more.
	cfg, _ := os.ReadFile(r.Config)
	os.WriteFile(r.Config, []byte(strings.Replace(string(cfg), "max_message_bytes = 10485760", "max_message_bytes = 104857600", 1)), 0o600)
	r.Stop(b)
	r.Start(b)
	load := &Load{Addr: r.Submission, CAFile: r.CA, User: User, Pass: Password, From: From,
		To: "colleague@practice.example", Sessions: 1, Prefix: "big", Size: func(int) int { return 50 << 20 }}
	b.ResetTimer()
	load.Run(context.Background(), 1)
	if len(load.Acked()) != 1 {
		b.Fatalf("not accepted: %v", load.Errors())
	}
	testutil.WaitWithin(b, 5*time.Minute, "the sink to receive it", func() bool {
		ents, _ := os.ReadDir(sink.Dir)
		return len(ents) == 1
	})
	rss, _ := procStats(r.Pid())
	b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MB")
}
