package provider

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/textproto"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"
)

// stuffedLikeSendBody is what sendBody puts on the wire for body.
func stuffedLikeSendBody(t testing.TB, body io.Reader, bufSize int) string {
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 64<<10)
	if err := stuffBody(bw, body, make([]byte, bufSize)); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	return out.String()
}

func stuffedByTextproto(body string) string {
	var out bytes.Buffer
	tw := textproto.NewWriter(bufio.NewWriter(&out))
	dw := tw.DotWriter()
	io.WriteString(dw, body)
	dw.Close()
	return out.String()
}

func TestSendBodyEncoding(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"empty", "", "\r\n.\r\n"},
		{"one line", "a\r\n", "a\r\n.\r\n"},
		{"no final line break", "a\r\nb", "a\r\nb\r\n.\r\n"},
		{"leading dots", ".\r\n..x\r\nmid.dle\r\n.", "..\r\n...x\r\nmid.dle\r\n..\r\n.\r\n"},
		{"a lone dot as the last line", "a\r\n.\r\n", "a\r\n..\r\n.\r\n"},
		{"bare line feeds", "a\nb\n.c\n", "a\r\nb\r\n..c\r\n.\r\n"},
		{"blank lines", "\r\n\r\n", "\r\n\r\n.\r\n"},
		{"the end of data inside", "x\r\n.\r\ny\r\n", "x\r\n..\r\ny\r\n.\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, bufSize := range []int{1, 2, 3, 7, 64 << 10} {
				// One octet per read, too: lines and line breaks split across reads.
				for _, r := range []io.Reader{strings.NewReader(tt.body), iotest.OneByteReader(strings.NewReader(tt.body))} {
					if got := stuffedLikeSendBody(t, r, bufSize); got != tt.want {
						t.Errorf("buffer %d: got %q, want %q", bufSize, got, tt.want)
					}
				}
			}
			if got := stuffedByTextproto(tt.body); got != tt.want {
				t.Errorf("net/textproto disagrees with the table: %q", got)
			}
		})
	}
}

// FuzzSendBody: the wire form is net/textproto's, octet for octet, for any
// body without a bare carriage return (sealpost refuses those on input and
// writes none); with them, the data still ends only at the end.
func FuzzSendBody(f *testing.F) {
	for _, s := range []string{"", "a\r\n", ".\r\n", "a\n.\nb", "x\r\n.\r\n", "..\r\n\r\n.", "\r\r\n", "a\rb\r\n.\r"} {
		f.Add(s, uint16(3))
	}
	f.Fuzz(func(t *testing.T, body string, bufSize uint16) {
		size := int(bufSize%300) + 1
		got := stuffedLikeSendBody(t, strings.NewReader(body), size)
		if !strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\r") {
			if want := stuffedByTextproto(body); got != want {
				t.Fatalf("buffer %d: got %q, textproto %q", size, got, want)
			}
			return
		}
		if i := strings.Index("\r\n"+got, "\r\n.\r\n"); i != len(got)-3 {
			t.Fatalf("end of data at %d of %d: %q", i, len(got), got)
		}
		if strings.Contains(strings.ReplaceAll(got, "\r\n", ""), "\n") {
			t.Fatalf("bare line feed in %q", got)
		}
	})
}

// deadlineConn records, for each write, whether a write deadline was set
// since the previous one.
type deadlineConn struct {
	net.Conn
	fresh   bool
	atWrite []bool
}

func (c *deadlineConn) SetWriteDeadline(time.Time) error { c.fresh = true; return nil }
func (c *deadlineConn) Write(p []byte) (int, error) {
	c.atWrite = append(c.atWrite, c.fresh)
	c.fresh = false
	return len(p), nil
}

// TestBodyWriteDeadlinePerWrite: a large copy may take as long as the uplink
// needs; only a write that stalls for the timeout fails. Each 64 KiB write
// gets a fresh deadline rather than one for the whole message.
func TestBodyWriteDeadlinePerWrite(t *testing.T) {
	c := &deadlineConn{}
	bw := bufio.NewWriterSize(stallWriter{c, time.Minute}, 64<<10)
	if err := stuffBody(bw, strings.NewReader(strings.Repeat("0123456789abcdef\r\n", 20000)), make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	bw.Flush()
	if len(c.atWrite) < 5 {
		t.Fatalf("%d writes for 360 KB", len(c.atWrite))
	}
	for i, fresh := range c.atWrite {
		if !fresh {
			t.Fatalf("write %d of %d ran under an earlier write's deadline", i, len(c.atWrite))
		}
	}
}

// BenchmarkDotStuffing dot-stuffs a 1 MiB message of 76-octet lines (a
// Base64 attachment) as go-smtp's client does, through net/textproto's
// DotWriter, and as sendBody does (stuffBody). cpu-ms/MiB is the process's
// CPU per MiB of message.
func BenchmarkDotStuffing(b *testing.B) {
	var msg bytes.Buffer
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 3)[:76] + "\r\n"
	for msg.Len() < 1<<20 {
		msg.WriteString(line)
	}
	body := msg.Bytes()
	run := func(b *testing.B, stuff func()) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		cpu := cpuTime()
		for i := 0; i < b.N; i++ {
			stuff()
		}
		b.ReportMetric(float64(cpuTime()-cpu)/1e6/float64(b.N)/(float64(len(body))/(1<<20)), "cpu-ms/MiB")
	}
	b.Run("textproto-DotWriter", func(b *testing.B) {
		bw := bufio.NewWriterSize(io.Discard, 4096)
		run(b, func() {
			dw := textproto.NewWriter(bw).DotWriter()
			dw.Write(body)
			dw.Close()
		})
	})
	b.Run("stuffBody", func(b *testing.B) {
		bw := bufio.NewWriterSize(io.Discard, 64<<10)
		buf := make([]byte, 64<<10)
		run(b, func() { stuffBody(bw, bytes.NewReader(body), buf) })
	})
}

// cpuTime is the CPU the test process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
