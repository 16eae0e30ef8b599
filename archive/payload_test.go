package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestLargeMessageStreams: a 40 MB message goes into the archive and out
// into an export without being held in memory (nor its ciphertext).
func TestLargeMessageStreams(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	m, head := testMessage(1, "anna@client.example")
	const size = 40 << 20
	var err error
	if grew := heapGrowth(func() {
		err = a.RecordMessage(context.Background(), m, io.MultiReader(strings.NewReader(head), io.LimitReader(zeros{}, size)))
	}); err != nil {
		t.Fatal(err)
	} else if grew > 24<<20 {
		t.Fatalf("heap grew by %d MB while archiving 40 MB", grew>>20)
	}
	a.Close()

	out := filepath.Join(t.TempDir(), "export")
	var rep *ExportReport
	if grew := heapGrowth(func() { rep, err = Export(context.Background(), f.dir, f.priv, out, Filter{}) }); err != nil {
		t.Fatal(err)
	} else if grew > 24<<20 {
		t.Fatalf("heap grew by %d MB while exporting 40 MB", grew>>20)
	}
	if rep.Messages != 1 {
		t.Fatalf("exported %d messages", rep.Messages)
	}
	fi, err := os.Stat(filepath.Join(out, "messages", m.ID+".eml"))
	if err != nil || fi.Size() != int64(len(head))+size {
		t.Fatalf("exported message: %v, %v; want %d octets", fi, err, len(head)+size)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(out, "messages", ".*")); len(leftovers) > 0 {
		t.Errorf("temporary files left in the export: %v", leftovers)
	}
}

// heapGrowth runs f and returns how far the heap in use rose above where it
// was before, sampled every few milliseconds.
func heapGrowth(f func()) int64 {
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	f()
	close(stop)
	<-done
	return int64(peak.Load()) - int64(base.HeapInuse)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

// TestRecordSizes: messages whose size the archive knows (a spool section)
// are recorded in memory up to 2 MiB and through a file beyond, and read
// back whole either way, as are those of unknown size.
func TestRecordSizes(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	want := map[string]string{}
	for i, size := range []int{10, 1900 << 10, 3 << 20, 2<<20 - 100} {
		m, head := testMessage(i+1, "anna@client.example")
		body := head + strings.Repeat("line of a large message\r\n", size/25)
		var r io.Reader = strings.NewReader(body) // has Size
		if i == 3 {
			r = io.MultiReader(r) // hides it
		}
		if err := a.RecordMessage(ctx, m, r); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(body))
		want[m.ID+"@practice.example"] = hex.EncodeToString(sum[:])
	}
	a.Close()
	exp := filepath.Join(t.TempDir(), "export")
	if _, err := Export(ctx, f.dir, f.priv, exp, Filter{}); err != nil {
		t.Fatal(err)
	}
	var man manifest
	mb, _ := os.ReadFile(filepath.Join(exp, "manifest.json"))
	if err := json.Unmarshal(mb, &man); err != nil {
		t.Fatal(err)
	}
	if len(man.Messages) != len(want) {
		t.Fatalf("%d messages exported, want %d", len(man.Messages), len(want))
	}
	for _, m := range man.Messages {
		b, _ := os.ReadFile(filepath.Join(exp, m.File))
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != m.SHA256 || got != want[m.MessageID] {
			t.Errorf("%s: exported %d octets that do not match what was recorded", m.MessageID, len(b))
		}
	}
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
