package sealed

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// message4KB is a 4 KB message as therapists write them: a text part with
// some Greek and Cyrillic, an HTML version, the notice.
func message4KB() []byte {
	para := "Thank you for your message. Our next session is on Thursday at 10:00; please bring the forms " +
		"we talked about (Zoë, café, Dvořák). Καλημέρα σας. Здравствуйте.\r\n\r\n"
	body := strings.Repeat(para, 4096/len(para)) + testNotice + "\r\n"
	return mixedMessage(body)
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchmarkSeal seals raw b.N times on all the benchmark's CPUs and
// reports messages per second and the CPU each costs. fresh: every message
// with a passphrase never seen (revision 6's derivation each time).
func benchmarkSeal(b *testing.B, raw []byte, fresh bool) {
	o := testOptions()
	var out countingWriter
	out.w = io.Discard
	if _, err := Seal(&out, bytes.NewReader(raw), o); err != nil { // derive the keys once
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		sink := countingWriter{w: io.Discard}
		for pb.Next() {
			opts := o
			if fresh {
				defaultKeys.mu.Lock()
				clear(defaultKeys.entries)
				defaultKeys.mu.Unlock()
			}
			if _, err := Seal(&sink, bytes.NewReader(raw), opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/msg")
}

// BenchmarkSeal4KB: a client's PDFs after the first (the passphrase's
// derived keys kept).
func BenchmarkSeal4KB(b *testing.B) { benchmarkSeal(b, message4KB(), false) }

// BenchmarkSeal4KBNewPassphrase: every PDF derives its keys anew, as the
// first for each client after a start does.
func BenchmarkSeal4KBNewPassphrase(b *testing.B) { benchmarkSeal(b, message4KB(), true) }

// BenchmarkSeal1MBAttachment: a short text with a 1 MB attachment.
func BenchmarkSeal1MBAttachment(b *testing.B) {
	benchmarkSeal(b, mixedMessage(testBody, attachment{"scan.pdf", randomBytes(1<<20, 4)}), false)
}

// BenchmarkSeal25MBAttachment seals a message with a 25 MB attachment from
// a file to a file, as the relay does from and to its spool, and reports
// the process's peak resident memory while it does (VmHWM, reset before
// each message) beside the message's size: the bound is the message × 3 +
// 50 MB.
func BenchmarkSeal25MBAttachment(b *testing.B) {
	write := func(b *testing.B, path string) int64 { return writeLargeMessage(b, path, 25<<20) }
	b.Run("file", func(b *testing.B) { benchmarkLarge(b, write, func(r io.Reader) io.Reader { return r }) })
	// A reader that does not tell its size: the message is read in chunks
	// and joined once.
	b.Run("stream", func(b *testing.B) {
		benchmarkLarge(b, write, func(r io.Reader) io.Reader { return struct{ io.Reader }{r} })
	})
}

// BenchmarkSeal25MBText seals a message whose 25 MB are its text, read as
// the relay reads it (a reader that does not tell its size): the lines the
// e2e load writes (one line over and over, which compresses to nearly
// nothing), and prose of words at random (which compresses as text does,
// about 3 to 1).
func BenchmarkSeal25MBText(b *testing.B) {
	stream := func(r io.Reader) io.Reader { return struct{ io.Reader }{r} }
	b.Run("repeated-line", func(b *testing.B) {
		benchmarkLarge(b, func(b *testing.B, path string) int64 { return writeTextMessage(b, path, 25<<20, repeatedLines) }, stream)
	})
	b.Run("prose", func(b *testing.B) {
		benchmarkLarge(b, func(b *testing.B, path string) int64 { return writeTextMessage(b, path, 25<<20, proseLines) }, stream)
	})
}

// benchmarkLarge seals the message write makes, b.N times, with the
// garbage collector set as sealpost serve sets it (GOGC=300): what a
// message allocates, not only what it holds, is what the relay's resident
// memory grows by.
func benchmarkLarge(b *testing.B, write func(*testing.B, string) int64, wrap func(io.Reader) io.Reader) {
	defer debug.SetGCPercent(debug.SetGCPercent(300))
	dir := b.TempDir()
	in := filepath.Join(dir, "message.eml")
	size := write(b, in)
	o := testOptions()
	o.MaxBytes = 0
	var peak int64
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		debug.FreeOSMemory()
		resetPeakRSS(b)
		r, err := os.Open(in)
		if err != nil {
			b.Fatal(err)
		}
		w, err := os.Create(filepath.Join(dir, "sealed.eml"))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		_, err = Seal(w, wrap(r), o)
		b.StopTimer()
		r.Close()
		w.Close()
		if err != nil {
			b.Fatal(err)
		}
		peak = max(peak, peakRSS(b))
		b.StartTimer()
	}
	b.ReportMetric(float64(size)/1e6, "msg-MB")
	b.ReportMetric(float64(peak)/1e6, "peak-rss-MB")
	b.ReportMetric(float64(size)*3/1e6+50, "bound-MB")
}

// writeLargeMessage writes a message with an attachment of n random bytes,
// base64, to path without holding it, and returns its size.
func writeLargeMessage(b *testing.B, path string, n int) int64 {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	head := mixedMessage(testBody)
	head = head[:len(head)-len("--outer--\r\n")]
	bw := bufio.NewWriter(f)
	bw.Write(head)
	bw.WriteString("--outer\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"scan.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	lines := &lineBreaker{w: bw}
	enc := base64.NewEncoder(base64.StdEncoding, lines)
	chunk := randomBytes(1<<20, 5)
	for i := 0; i < n; i += len(chunk) {
		enc.Write(chunk[:min(len(chunk), n-i)])
	}
	enc.Close()
	bw.WriteString("\r\n--outer--\r\n")
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

// repeatedLines writes the line e2e/load.go's messages are made of.
func repeatedLines(w *bufio.Writer, _ int) {
	w.WriteString("The quick brown fox jumps over the lazy dog.0123456789abcdefghijklmnopqrstuvwxyz\r\n")
}

// proseLines writes a paragraph of words from the word list at random.
func proseLines(w *bufio.Writer, i int) {
	loadWords()
	r := rand.New(rand.NewPCG(uint64(i), 7))
	for range 6 {
		col := 0
		for col < 70 {
			word := words[r.IntN(len(words))]
			w.WriteString(word)
			col += len(word)
			if col < 70 {
				w.WriteByte(' ')
				col++
			}
		}
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
}

// writeTextMessage writes a text/plain message of about n bytes of text,
// made by lines, with the notice at its end, and returns its size.
func writeTextMessage(b *testing.B, path string, n int, lines func(*bufio.Writer, int)) int64 {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	cw := &countingWriter{w: f}
	bw := bufio.NewWriter(cw)
	bw.WriteString("From: Anna <anna@praxis.example>\r\nTo: Zoe <zoe@example.org>\r\n" +
		"Date: Tue, 01 Dec 2026 10:15:00 +0100\r\nMessage-ID: <big@praxis.example>\r\nSubject: a long text\r\n\r\n")
	for i := 0; cw.n+int64(bw.Buffered()) < int64(n); i++ {
		lines(bw, i)
	}
	bw.WriteString("\r\n" + testNotice + "\r\n")
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

// resetPeakRSS starts the kernel's count of the peak resident set afresh.
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Skipf("cannot reset the peak RSS: %v", err)
	}
}

// peakRSS is the peak resident set since resetPeakRSS, in bytes.
func peakRSS(b *testing.B) int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}
