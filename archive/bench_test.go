package archive

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkRecordMessage: 20 writers archiving 4 KB messages at once; the
// p99 of one RecordMessage is what archiving adds to a submission (goal:
// under 2 ms).
func BenchmarkRecordMessage(b *testing.B) {
	f := newFixture(b)
	a := f.open(b, 0)
	defer a.Close()
	body := strings.Repeat("x", 4000)
	var mu sync.Mutex
	var lat []time.Duration
	per := b.N/20 + 1
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				m, head := testMessage(w*per+i, "anna@client.example")
				start := time.Now()
				if err := a.RecordMessage(context.Background(), m, strings.NewReader(head+body)); err != nil {
					b.Error(err)
					return
				}
				d := time.Since(start)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}

// BenchmarkVerify: verify reads and hashes everything (goal ≥ 200 MB/s).
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	a := f.open(b, 16<<20)
	body := strings.Repeat("y", 256<<10)
	for i := 0; i < 200; i++ {
		m, head := testMessage(i, "anna@client.example")
		a.RecordMessage(context.Background(), m, strings.NewReader(head+body))
	}
	a.Close()
	var size int64
	segs, _ := filepath.Glob(filepath.Join(f.dir, "seg-*"))
	for _, s := range segs {
		fi, _ := os.Stat(s)
		size += fi.Size()
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Verify(f.dir, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExport: exporting small messages (goal: 100,000 in under a
// minute; SEALPOST_BENCH_EXPORT sets how many).
func BenchmarkExport(b *testing.B) {
	n, kb := 10000, 0
	if v := os.Getenv("SEALPOST_BENCH_EXPORT"); v != "" {
		fmt.Sscanf(v, "%d", &n)
	}
	if v := os.Getenv("SEALPOST_BENCH_EXPORT_KB"); v != "" { // each message padded to this size
		fmt.Sscanf(v, "%d", &kb)
	}
	f := newFixture(b)
	a := f.open(b, 0)
	var wg sync.WaitGroup
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 20 {
				m, body := testMessage(i, "anna@client.example")
				m.ID = fmt.Sprintf("m%07d", i)
				if pad := kb<<10 - len(body); pad > 0 {
					body += strings.Repeat("Confidential line of the attachment, seventy-two octets long, padded...\r\n", pad/74+1)
				}
				a.RecordMessage(context.Background(), m, strings.NewReader(body))
			}
		}(w)
	}
	wg.Wait()
	a.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out := filepath.Join(b.TempDir(), "export")
		rep, err := Export(context.Background(), f.dir, f.priv, out, Filter{})
		if err != nil || rep.Messages != n {
			b.Fatalf("%v %+v", err, rep)
		}
	}
	b.ReportMetric(float64(n), "messages")
	b.ReportMetric(float64(n)*float64(max(kb, 1))/1024/(b.Elapsed().Seconds()/float64(b.N)), "MB/s")
}

// BenchmarkRecordMessagePaced: 4 KB messages arriving at 200 a second from
// 20 sessions, the load of a busy practice; p99 is what archiving adds to
// a submission (goal: under 2 ms).
func BenchmarkRecordMessagePaced(b *testing.B) {
	f := newFixture(b)
	a := f.open(b, 0)
	defer a.Close()
	body := strings.Repeat("x", 4000)
	const rate = 200
	n := max(b.N, 1000)
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	b.ResetTimer()
	for i := 0; i < n; i++ {
		<-tick.C
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m, head := testMessage(i, "anna@client.example")
			start := time.Now()
			if err := a.RecordMessage(context.Background(), m, strings.NewReader(head+body)); err != nil {
				b.Error(err)
			}
			mu.Lock()
			lat = append(lat, time.Since(start))
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}

// BenchmarkEncryptRecord: the CPU cost of sealing one record's payload (the
// metadata and the message, encrypted to the archive key), without the
// disk: what archiving costs the relay per message besides its fsync.
func BenchmarkEncryptRecord(b *testing.B) {
	f := newFixture(b)
	a := f.open(b, 0)
	defer a.Close()
	for _, size := range []int{4 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			m, head := testMessage(1, "anna@client.example")
			const line = "Confidential line of the attachment, seventy-two octets long, padded...\r\n"
			body := head + strings.Repeat(line, size/len(line)+1)[:size-len(head)]
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				p, _, err := a.encrypt(&messageMeta{Message: m}, strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				p.close()
			}
		})
	}
}
