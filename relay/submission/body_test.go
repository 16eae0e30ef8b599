package submission

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// chunkConn is the client side of a session inside TLS, as frontConn sees
// it: the input arrives size octets per read.
type chunkConn struct {
	net.Conn
	in   *bytes.Reader
	size int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(p) > c.size {
		p = p[:c.size]
	}
	return c.in.Read(p)
}

func (c *chunkConn) SetReadDeadline(time.Time) error { return nil }

func wireOver(input string, size int, maxSize int64) *wire {
	f := newWire(&socket{}, &wireConfig{timeout: time.Second, maxSize: maxSize}, nil)
	f.sec = &chunkConn{in: bytes.NewReader([]byte(input)), size: size}
	f.ready = true
	f.dataIssued.Store(true)
	return f
}

// referenceData is DATA as RFC 5321 4.5.2 and go-smtp read it, a byte at a
// time: it returns the message, and how much of the input it took up to and
// including the end line, or -1 when the input has no end. (Where go-smtp
// drops a "." then a bare CR at a line start, this keeps the CR, as
// bodyReader does, for strictReader to refuse.)
func referenceData(in []byte) (string, int) {
	var out bytes.Buffer
	lineStart, prevCR := true, false
	for i := 0; i < len(in); i++ {
		c := in[i]
		if lineStart && c == '.' {
			if i+2 < len(in) && in[i+1] == '\r' && in[i+2] == '\n' {
				return out.String(), i + 3
			}
			if i+1 == len(in) || i+2 == len(in) && in[i+1] == '\r' {
				break // not enough to tell
			}
			lineStart = false
			continue // the stuffed dot
		}
		lineStart = c == '\n' && prevCR
		prevCR = c == '\r'
		out.WriteByte(c)
	}
	return out.String(), -1
}

func readBody(t testing.TB, f *wire, readSize int) (string, error) {
	b := f.body()
	if b == nil {
		t.Fatal("no body reader after DATA")
	}
	var out bytes.Buffer
	buf := make([]byte, readSize)
	var err error
	for {
		var n int
		n, err = b.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	b.finish()
	return out.String(), err
}

func TestBodyReader(t *testing.T) {
	tests := []struct{ name, in, want, rest string }{
		{"empty message", ".\r\nQUIT\r\n", "", "QUIT\r\n"},
		{"one line", "a\r\n.\r\n", "a\r\n", ""},
		{"stuffed dots", "..\r\n...x\r\n.y\r\n.\r\nNOOP\r\n", ".\r\n..x\r\ny\r\n", "NOOP\r\n"},
		{"no end at bare line feeds", "x\n.\nMAIL FROM:<a@b>\r\n.\r\n", "x\n.\nMAIL FROM:<a@b>\r\n", ""},
		{"no end after a bare CR", "x\r.\r\ny\r\n.\r\n", "x\r.\r\ny\r\n", ""},
		{"dot and bare CR kept for strictReader", "a\r\n.\rb\r\n.\r\n", "a\r\n\rb\r\n", ""},
		{"pipelined commands after the end", "m\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", "m\r\n", "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, chunk := range []int{1, 2, 3, 5, 1 << 16} {
				for _, readSize := range []int{1, 4, 4096} {
					f := wireOver(tt.in, chunk, 1<<20)
					got, err := readBody(t, f, readSize)
					if got != tt.want || err != io.EOF {
						t.Fatalf("chunk %d, read %d: %q, %v; want %q", chunk, readSize, got, err, tt.want)
					}
					// go-smtp then reads the end of its own (empty) DATA, then
					// the client's next commands, one line per read.
					rest, _ := io.ReadAll(f)
					if string(rest) != ".\r\n"+tt.rest {
						t.Fatalf("chunk %d, read %d: go-smtp reads %q after the message, want %q", chunk, readSize, rest, ".\r\n"+tt.rest)
					}
				}
			}
		})
	}
}

func TestBodyReaderLimits(t *testing.T) {
	// Too large: refused, read to its end all the same, and the session
	// goes on after it.
	f := wireOver("0123456789\r\n.\r\nNOOP\r\n", 3, 8)
	if _, err := readBody(t, f, 4096); err != smtp.ErrDataTooLarge {
		t.Fatalf("a 12-octet message under a limit of 8: %v", err)
	}
	if rest, _ := io.ReadAll(f); string(rest) != ".\r\nNOOP\r\n" {
		t.Fatalf("after the refused message go-smtp reads %q", rest)
	}
	// The client goes away mid-message: nothing after it is a command.
	f = wireOver("half a mess", 4, 1<<20)
	if _, err := readBody(t, f, 4096); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a message cut off: %v", err)
	}
	if n, err := f.Read(make([]byte, 10)); n != 0 || err == nil {
		t.Fatalf("go-smtp reads %d octets after a cut-off message", n)
	}
}

// TestBodyReaderBuffers: a message is read through a 64 KiB buffer, and
// the connection goes back to its small one after it, keeping whatever the
// client pipelined behind the message, however much.
func TestBodyReaderBuffers(t *testing.T) {
	for _, after := range []string{"", "NOOP\r\n", strings.Repeat("NOOP\r\n", 3000)} {
		f := wireOver(strings.Repeat("line\r\n", 20000)+".\r\n"+after, 1<<16, 1<<20)
		if _, err := readBody(t, f, 4096); err != io.EOF {
			t.Fatal(err)
		}
		if small := len(after) <= commandBufSize; small != (len(f.buf) == commandBufSize) {
			t.Errorf("%d octets pipelined: buffer of %d after the message", len(after), len(f.buf))
		}
		if rest, _ := io.ReadAll(f); string(rest) != ".\r\n"+after {
			t.Errorf("%d octets pipelined: go-smtp reads %d after the message", len(after), len(rest)-3)
		}
	}
}

// TestBodyReaderOnlyAfterDATA: BDAT, DATA with anything after it, and any
// DATA after a BDAT (whose chunk may hold a line "DATA") leave the message
// to go-smtp's reader.
func TestBodyReaderOnlyAfterDATA(t *testing.T) {
	for line, want := range map[string]bool{"DATA\r\n": true, "data\r\n": true, "DATA\n": true, "BDAT 5 LAST\r\n": false, "DATA x\r\n": false, "DATAX\r\n": false,
		"NOOP\r\nDATA\r\n": true, "BDAT 6 LAST\r\nDATA\r\n": false, "bdat 6\r\nDATA\r\nBDAT 0 LAST\r\nDATA\r\n": false} {
		f := wireOver(line, 2, 100)
		f.dataIssued.Store(false)
		var buf [4096]byte
		for {
			if _, err := f.Read(buf[:]); err != nil {
				break
			}
		}
		if got := f.body() != nil; got != want {
			t.Errorf("after %q: body reader %v, want %v", line, got, want)
		}
	}
}

// FuzzBodyReader: for any input and any way it arrives, bodyReader returns
// what a byte-at-a-time DATA reader would, stops right after the end line,
// and leaves everything after it to go-smtp.
func FuzzBodyReader(f *testing.F) {
	for _, s := range []string{".\r\n", "a\r\n.\r\n", "..\r\n.\r\nX", "x\n.\n.\r\n", "\r\n.\r\n", ".\r.\r\n", "a\r\r\n.\r\n", "."} {
		f.Add(s, uint8(1), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in string, chunk, readSize uint8) {
		want, end := referenceData([]byte(in))
		fc := wireOver(in, int(chunk%16)+1, 1<<20)
		got, err := readBody(t, fc, int(readSize%64)+1)
		if end < 0 {
			if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.HasPrefix(want, got) {
				t.Fatalf("no end in %q: got %q, %v", in, got, err)
			}
			return
		}
		if err != io.EOF || got != want {
			t.Fatalf("%q: got %q, %v; want %q", in, got, err, want)
		}
		rest, _ := io.ReadAll(fc)
		if string(rest) != ".\r\n"+in[end:] {
			t.Fatalf("%q: go-smtp reads %q after the message, want %q", in, rest, ".\r\n"+in[end:])
		}
	})
}

// cpuTime is the CPU the test process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// attachmentLike is a 1 MiB message of 76-octet lines, as a Base64
// attachment is.
func attachmentLike() []byte {
	var b bytes.Buffer
	b.WriteString("From: a@b.example\r\nSubject: s\r\n\r\n")
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 3)[:76] + "\r\n"
	for b.Len() < 1<<20 {
		b.WriteString(line)
	}
	return b.Bytes()
}

// discardSession takes every message and reads it to its end: through the
// wire's body reader when wire is set, else through go-smtp's DATA reader.
type discardSession struct {
	conn *smtp.Conn
	wire bool
}

func (s *discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *discardSession) Reset()                               {}
func (s *discardSession) Logout() error                        { return nil }
func (s *discardSession) Data(r io.Reader) error {
	if s.wire {
		if b := wireOf(s.conn.Conn()).body(); b != nil {
			defer b.finish()
			r = b
		}
	}
	_, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, make([]byte, 64<<10))
	return err
}

// wireListener hands go-smtp its connections inside a wire, as if TLS were
// already up (the benchmark measures reading, not TLS).
type wireListener struct{ net.Listener }

func (l wireListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := newWire(&socket{Conn: c}, &wireConfig{timeout: time.Minute, maxSize: 64 << 20}, nil)
	w.sec, w.ready = c, true
	return w, nil
}

// BenchmarkDATAReader reads 1 MiB messages off a loopback connection
// through a go-smtp server: with go-smtp's own DATA reader (a byte at a
// time), and with the wire's block reader. cpu-ms/MiB is the process's CPU
// (client and server) per MiB of message.
func BenchmarkDATAReader(b *testing.B) {
	for _, wire := range []bool{false, true} {
		name := "go-smtp"
		if wire {
			name = "wire"
		}
		b.Run(name, func(b *testing.B) {
			srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &discardSession{conn: c, wire: wire}, nil }))
			srv.Domain = "bench.test"
			srv.MaxMessageBytes = 64 << 20
			srv.MaxLineLength = maxBodyLineOctets + 2
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var sl net.Listener = l
			if wire {
				sl = wireListener{l}
			}
			go srv.Serve(sl)
			defer srv.Close()
			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			tp := textproto.NewConn(conn)
			tp.ReadResponse(220)
			tp.PrintfLine("EHLO client.test")
			tp.ReadResponse(250)
			body := attachmentLike()
			var stuffed bytes.Buffer
			dw := textproto.NewWriter(bufio.NewWriter(&stuffed)).DotWriter()
			dw.Write(body)
			dw.Close()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				io.WriteString(conn, "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
				tp.ReadResponse(250)
				tp.ReadResponse(250)
				if _, _, err := tp.ReadResponse(354); err != nil {
					b.Fatal(err)
				}
				conn.Write(stuffed.Bytes())
				if _, _, err := tp.ReadResponse(250); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/1e6/float64(b.N)/(float64(len(body))/(1<<20)), "cpu-ms/MiB")
		})
	}
}
