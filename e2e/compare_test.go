package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// BenchmarkVersusPostfix runs Postfix (from Debian, the relay practices
// know) and sealpost side by side on this machine, both taking STARTTLS +
// AUTH submissions with the same certificate and relaying into smtp-sink,
// driven by the same load generator, and prints a markdown table. Run it
// with e2e/bench/compare.sh (it is not part of go test ./...).
//
// SEALPOST_BENCH_RUNS (default 3) runs per row, medians reported;
// SEALPOST_BENCH_MESSAGES (default 5000) messages per 4 KB run;
// SEALPOST_BENCH_MIX (default 1000) messages per realistic-mix run (1000
// makes the mix exact: 900 x 8 KB, 90 x 1 MB, 9 x 5 MB, 1 x 25 MB);
// SEALPOST_BENCH_ROWS runs only the rows whose name contains it, or with
// several separated by ";", any of them ("=NAME": only the row of that
// name).
func BenchmarkVersusPostfix(b *testing.B) {
	testutil.RequireTools(b, "gpg", "smtp-sink")
	runs := envInt("SEALPOST_BENCH_RUNS", 3)
	n4k := envInt("SEALPOST_BENCH_MESSAGES", 5000)
	nMix := envInt("SEALPOST_BENCH_MIX", 1000)
	const sessions = 20

	fsyncRate := measureFsync(b)

	// sealpost, with keys for the OpenPGP rows.
	sink := StartSink(b)
	r := StartRelay(b, RelayOptions{Sink: sink, Quiet: true})
	cfg, _ := os.ReadFile(r.Config)
	os.WriteFile(r.Config, []byte(strings.Replace(string(cfg), "max_message_bytes = 10485760", "max_message_bytes = 41943040", 1)), 0o600)
	r.Stop(b)
	r.Start(b)
	dir := b.TempDir()
	for _, k := range []struct{ home, uid, algo string }{
		{"x25519", "X <x25519@client.example>", "future-default"},
		{"rsa", "R <rsa3072@client.example>", "rsa3072"},
	} {
		pub := gpgKey(b, dir, k.home, k.uid, k.algo, "never")
		if _, errOut, code := r.Run(b, "", "keys", "import", pub); code != 0 {
			b.Fatal(errOut)
		}
	}
	// A client without a key, with a passphrase: the sealed PDF rows.
	if _, errOut, code := r.Run(b, "orchard lantern sixty blue\n", "consent", "passphrase", "sealed@client.example", "--name", "Bench Client"); code != 0 {
		b.Fatal(errOut)
	}

	// Postfix with the same certificate, SASL through Dovecot.
	certDir := b.TempDir()
	openUp(certDir)
	for _, f := range []string{"cert.pem", "key.pem"} {
		data, err := os.ReadFile(filepath.Join(r.DataDir, "tls", f))
		if err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(certDir, f), data, 0o644)
	}
	p := StartPostfix(b, PostfixOptions{SASL: true, Extra: []string{
		"smtpd_tls_cert_file = " + filepath.Join(certDir, "cert.pem"),
		"smtpd_tls_key_file = " + filepath.Join(certDir, "key.pem"),
		"default_process_limit = 200",
	}})

	fourK := func(int) int { return 4096 }
	// The mix is the same in every run: message i's size depends on i only.
	mix := func(i int) int {
		switch x := (i * 617) % 1000; {
		case x < 1:
			return 25 << 20
		case x < 10:
			return 5 << 20
		case x < 100:
			return 1 << 20
		}
		return 8 << 10
	}
	type row struct {
		name   string
		target string // "postfix" or "sealpost"
		to     string
		size   func(int) int
		n      int
		rate   float64
		s3     bool // the relay that copies its record to S3
	}
	rows := []row{
		{"4 KB, plain relay", "postfix", "colleague@practice.example", fourK, n4k, 0, false},
		{"4 KB, notice + archive", "sealpost", "colleague@practice.example", fourK, n4k, 0, false},
		{"4 KB, notice + archive + S3 upload", "sealpost", "colleague@practice.example", fourK, n4k, 0, true},
		{pgRow, "sealpost", "colleague@practice.example", fourK, n4k, 0, false},
		{"4 KB, notice + archive + OpenPGP X25519", "sealpost", "x25519@client.example", fourK, n4k, 0, false},
		{"4 KB, notice + archive + OpenPGP RSA-3072", "sealpost", "rsa3072@client.example", fourK, n4k, 0, false},
		{"realistic mix, plain relay", "postfix", "colleague@practice.example", mix, nMix, 0, false},
		{"realistic mix, notice + archive + OpenPGP X25519", "sealpost", "x25519@client.example", mix, nMix, 0, false},
		{"4 KB paced at 200/s, plain relay", "postfix", "colleague@practice.example", fourK, 2000, 200, false},
		{"4 KB paced at 200/s, notice + archive", "sealpost", "colleague@practice.example", fourK, 2000, 200, false},
		{"4 KB, notice + archive + sealed PDF", "sealpost", "sealed@client.example", fourK, n4k, 0, false},
		{"realistic mix, notice + archive + sealed PDF", "sealpost", "sealed@client.example", mix, nMix, 0, false},
	}
	if only := os.Getenv("SEALPOST_BENCH_ROWS"); only != "" {
		var keep []row
		for _, rw := range rows {
			for _, o := range strings.Split(only, ";") {
				if exact, ok := strings.CutPrefix(o, "="); ok && rw.name == exact || !ok && strings.Contains(rw.name, o) {
					keep = append(keep, rw)
					break
				}
			}
		}
		rows = keep
	}
	var s3 *s3Bench
	var pg *pgBench
	for _, rw := range rows {
		if rw.s3 && s3 == nil {
			s3 = startS3Bench(b, sink)
		}
		if rw.name == pgRow && pg == nil {
			pg = startPGBench(b, sink)
		}
	}
	type result struct{ accepted, e2e, p50, p99, cpu, rss float64 }
	results := map[string]result{}
	all := map[string][]result{}
	b.ResetTimer()
	// Runs outside, rows inside: the host's load drifts over minutes, and a
	// ratio is fair only between runs made close together.
	for run := 0; run < runs; run++ {
		for _, rw := range rows {
			var addr, ca string
			var sinkDir string
			var pid, sinkPid int
			if rw.target == "postfix" {
				addr, ca, sinkDir, sinkPid = p.Addr(), r.CA, p.Sink.Dir, p.Sink.cmd.Process.Pid
			} else if rw.s3 {
				addr, ca, sinkDir, pid, sinkPid = s3.r.Submission, s3.r.CA, sink.Dir, s3.r.Pid(), sink.cmd.Process.Pid
			} else if rw.name == pgRow {
				addr, ca, sinkDir, pid, sinkPid = pg.r.Submission, pg.r.CA, sink.Dir, pg.r.Pid(), sink.cmd.Process.Pid
			} else {
				addr, ca, sinkDir, pid, sinkPid = r.Submission, r.CA, sink.Dir, r.Pid(), sink.cmd.Process.Pid
			}
			user, pass := User, Password
			if rw.target == "postfix" {
				user, pass = p.Username, p.Password
			}
			clearDir(sinkDir)
			load := &Load{Addr: addr, CAFile: ca, User: user, Pass: pass, From: From, To: rw.to,
				Sessions: sessions, PerSession: 100, Size: rw.size, Rate: rw.rate, Prefix: fmt.Sprintf("cmp%d", run)}
			peak := &rssSampler{pid: pid}
			peak.start()
			cpu0 := systemCPU()
			self0 := selfCPU()
			relay0, sink0 := procCPU(pid), procCPU(sinkPid)
			start := time.Now()
			var profiled chan struct{}
			if dir := os.Getenv("SEALPOST_BENCH_PROFILE"); dir != "" && rw.target == "sealpost" && run == 0 {
				profiled = make(chan struct{})
				go func() {
					defer close(profiled)
					cpuProfile(b, filepath.Join(r.DataDir, "control.sock"), filepath.Join(dir, strings.NewReplacer(" ", "", ",", "_", "+", "").Replace(rw.name)+".pprof"))
				}()
			}
			load.Run(context.Background(), rw.n)
			accepted := time.Since(start)
			acked := len(load.Acked())
			testutil.WaitWithin(b, 15*time.Minute, "the sink to receive every message answered 250", func() bool { return countFiles(sinkDir) >= acked })
			e2e := time.Since(start)
			time.Sleep(300 * time.Millisecond) // a duplicate would arrive now
			cpu := systemCPU() - cpu0 - (selfCPU() - self0)
			// Not in the table: where the machine's CPU went, for whoever
			// works on the relay's (the host's load moves the machine's).
			rate := float64(acked) / e2e.Seconds()
			if pid != 0 {
				fmt.Fprintf(os.Stderr, "run %d, %s: %.0f msg/s end to end, sealpost process %.0f µs/msg, smtp-sink %.0f µs/msg\n", run+1, rw.name, rate,
					float64((procCPU(pid)-relay0).Microseconds())/float64(acked), float64((procCPU(sinkPid)-sink0).Microseconds())/float64(acked))
			} else {
				fmt.Fprintf(os.Stderr, "run %d, %s: %.0f msg/s end to end, smtp-sink %.0f µs/msg\n", run+1, rw.name, rate, float64((procCPU(sinkPid)-sink0).Microseconds())/float64(acked))
			}
			rss := peak.stop()
			if profiled != nil {
				<-profiled
			}
			if errs := load.Errors(); len(errs) > 0 || acked != rw.n {
				b.Fatalf("%s (%s): %d of %d accepted; errors %v", rw.name, rw.target, acked, rw.n, errs)
			}
			if got := countFiles(sinkDir); got != acked {
				b.Fatalf("%s (%s): the sink got %d messages for %d answered 250: the run does not count", rw.name, rw.target, got, acked)
			}
			if rw.s3 {
				s3.caughtUp(b, run)
			}
			if rw.name == pgRow {
				pg.reportTransactions(b, run, acked)
			}
			key := rw.name + "|" + rw.target
			all[key] = append(all[key], result{float64(acked) / accepted.Seconds(), float64(acked) / e2e.Seconds(),
				ms(load.Percentile(50)), ms(load.Percentile(99)), cpu.Seconds() * 1e6 / float64(acked), rss / (1 << 20)})
		}
	}
	for key, rs := range all {
		results[key] = result{
			median(rs, func(x result) float64 { return x.accepted }), median(rs, func(x result) float64 { return x.e2e }),
			median(rs, func(x result) float64 { return x.p50 }), median(rs, func(x result) float64 { return x.p99 }),
			median(rs, func(x result) float64 { return x.cpu }), median(rs, func(x result) float64 { return x.rss }),
		}
	}
	b.StopTimer()

	var out strings.Builder
	fmt.Fprintf(&out, "\nDisk: %.0f fdatasync/s (4 KB writes). %d sessions, STARTTLS + AUTH PLAIN, %d runs per row, medians.\n\n", fsyncRate, sessions, runs)
	out.WriteString("| row | relay | accepted/s | end to end/s | p50 ms | p99 ms | CPU µs/msg | peak RSS MB | sealpost/Postfix (end to end) |\n")
	out.WriteString("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	base := map[string]float64{
		"4 KB": results["4 KB, plain relay|postfix"].e2e, "realistic mix": results["realistic mix, plain relay|postfix"].e2e,
		"4 KB paced at 200/s": results["4 KB paced at 200/s, plain relay|postfix"].e2e,
	}
	for _, rw := range rows {
		x := results[rw.name+"|"+rw.target]
		ratio := ""
		if rw.target == "sealpost" {
			kind, _, _ := strings.Cut(rw.name, ",")
			if bb := base[kind]; bb > 0 {
				ratio = fmt.Sprintf("%.2f", x.e2e/bb)
			}
		}
		rss := fmt.Sprintf("%.0f", x.rss)
		fmt.Fprintf(&out, "| %s | %s | %.0f | %.0f | %.1f | %.1f | %.0f | %s | %s |\n", rw.name, rw.target, x.accepted, x.e2e, x.p50, x.p99, x.cpu, rss, ratio)
	}
	fmt.Print(out.String())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func clearDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.Remove(filepath.Join(dir, e.Name()))
	}
}

func countFiles(dir string) int {
	ents, _ := os.ReadDir(dir)
	return len(ents)
}

// systemCPU is the CPU time all processes used so far (user + system, all
// cores), from /proc/stat.
func systemCPU() time.Duration {
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 7 { // idle, iowait; steal (the host's), guest (counted in user)
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100
}

// procCPU is a process's CPU time (user and system), 0 for pid 0.
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which may hold spaces, in parentheses.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100
}

// selfCPU is this process's CPU time: the load generator's, taken out.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssSampler follows the peak resident memory of sealpost (pid) or, with
// pid 0, of all Postfix processes together (their proportional set size,
// so that the pages they share are counted once).
type rssSampler struct {
	pid  int
	peak float64
	done chan struct{}
	wg   sync.WaitGroup
}

var postfixProcs = map[string]bool{"master": true, "smtpd": true, "cleanup": true, "qmgr": true, "smtp": true,
	"trivial-rewrite": true, "anvil": true, "tlsmgr": true, "pickup": true, "proxymap": true, "scache": true, "bounce": true}

func (s *rssSampler) sample() float64 {
	if s.pid != 0 {
		return float64(statusKB(fmt.Sprintf("/proc/%d/status", s.pid), "VmRSS:")) * 1024
	}
	var sum int64
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		if postfixProcs[strings.TrimSpace(string(comm))] {
			// Proportional set size: pages the processes share count once.
			sum += statusKB("/proc/"+e.Name()+"/smaps_rollup", "Pss:")
		}
	}
	return float64(sum) * 1024
}

func (s *rssSampler) start() {
	s.done = make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			s.peak = max(s.peak, s.sample())
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
}

func (s *rssSampler) stop() float64 {
	close(s.done)
	s.wg.Wait()
	return max(s.peak, s.sample())
}

func statusKB(path, key string) int64 {
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// measureFsync writes 4 KB and fdatasyncs it, for two seconds: the disk's
// own rate of durable writes, which bounds every relay here.
func measureFsync(b *testing.B) float64 {
	f, err := os.CreateTemp(b.TempDir(), "fsync")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	n := 0
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		f.Write(buf)
		syscall.Fdatasync(int(f.Fd()))
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// cpuProfile takes a 20-second CPU profile of the running sealpost through
// its control socket (SEALPOST_BENCH_PROFILE=DIR: the first run of every
// sealpost row; read it with go tool pprof).
func cpuProfile(b *testing.B, sock, out string) {
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://sealpost/debug/pprof/profile?seconds=20")
	if err != nil {
		b.Logf("profile: %v", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(out)
	if err != nil {
		b.Logf("profile: %v", err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		b.Logf("profile: %v", err)
	}
	b.Logf("CPU profile: %s", out)
}
