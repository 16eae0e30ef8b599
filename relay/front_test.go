package relay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

func frontOver(input string, size int, maxSize int64) *frontConn {
	f := newFrontConn(&guardConn{}, &frontConfig{timeout: time.Second, maxSize: maxSize}, nil)
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

func readBody(t testing.TB, f *frontConn, readSize int) (string, error) {
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
					f := frontOver(tt.in, chunk, 1<<20)
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
	f := frontOver("0123456789\r\n.\r\nNOOP\r\n", 3, 8)
	if _, err := readBody(t, f, 4096); err != smtp.ErrDataTooLarge {
		t.Fatalf("a 12-octet message under a limit of 8: %v", err)
	}
	if rest, _ := io.ReadAll(f); string(rest) != ".\r\nNOOP\r\n" {
		t.Fatalf("after the refused message go-smtp reads %q", rest)
	}
	// The client goes away mid-message: nothing after it is a command.
	f = frontOver("half a mess", 4, 1<<20)
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
		f := frontOver(strings.Repeat("line\r\n", 20000)+".\r\n"+after, 1<<16, 1<<20)
		if _, err := readBody(t, f, 4096); err != io.EOF {
			t.Fatal(err)
		}
		if small := len(after) <= frontBufSize; small != (len(f.buf) == frontBufSize) {
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
		f := frontOver(line, 2, 100)
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
		fc := frontOver(in, int(chunk%16)+1, 1<<20)
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

// TestBeforeTLS: on the submission port sealpost itself answers until
// STARTTLS; nothing but the greeting commands works before it.
func TestBeforeTLS(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	r := startRelay(t, relayOpts{metrics: m})
	s := rawDial(t, r.addrs.Submission.String())
	for _, tt := range []struct {
		line string
		code int
		text string
	}{
		{"HELO client.test", 250, ""},
		{"EHLO", 501, "5.5.2"},
		{"NOOP", 250, "2.0.0"},
		{"RSET", 250, "2.0.0"},
		{"MAIL FROM:<" + testFrom + ">", 530, "5.7.0 Authentication required"},
		{"RCPT TO:<a@practice.example>", 530, "5.7.0 Authentication required"},
		{"DATA", 530, "5.7.0 Must issue a STARTTLS command first"},
		{"AUTH PLAIN", 538, "5.7.11 Encryption required"},
		{"BDAT 3 LAST", 530, "5.7.0"},
		{"STARTTLS now", 530, "5.7.0"},
		{"EHLO client.test", 250, "STARTTLS"},
	} {
		if code, msg := s.cmd(tt.line); code != tt.code || !strings.Contains(msg, tt.text) {
			t.Errorf("%s: %d %s; want %d %s", tt.line, code, msg, tt.code, tt.text)
		}
	}
	for l, want := range map[[2]string]float64{{"command", "tls_required"}: 3, {"auth", "tls_required"}: 1, {"mail", "auth_required"}: 1, {"rcpt", "auth_required"}: 1} {
		if n := testutil.ToFloat64(m.refused.WithLabelValues(l[0], l[1])); n != want {
			t.Errorf("refusals{stage=%q,reason=%q} = %v, want %v", l[0], l[1], n, want)
		}
	}
	if code, _ := s.cmd("QUIT"); code != 221 {
		t.Errorf("QUIT: %d", code)
	}
	if !closedByServer(s.conn) {
		t.Error("the connection is open after QUIT")
	}

	// A client that keeps sending what is refused is cut off.
	s = rawDial(t, r.addrs.Submission.String())
	for i := 0; i < maxSessionErrors-1; i++ {
		s.cmd("MAIL FROM:<" + testFrom + ">")
	}
	if code, msg := s.cmd("MAIL FROM:<" + testFrom + ">"); code != 421 {
		t.Errorf("refusal %d: %d %s, want 421", maxSessionErrors, code, msg)
	}
	if !closedByServer(s.conn) {
		t.Error("the connection is open after too many errors")
	}
	// And so is one whose line never ends.
	s = rawDial(t, r.addrs.Submission.String())
	if code, msg := s.cmd(strings.Repeat("x", 2*maxPreTLSLine)); code != 500 {
		t.Errorf("an endless line: %d %s", code, msg)
	}
	if !closedByServer(s.conn) {
		t.Error("the connection is open after an endless line")
	}
	// And so is one that idles before STARTTLS with harmless commands
	// (each would have renewed the timeout), holding a connection slot.
	s = rawDial(t, r.addrs.Submission.String())
	for i := 0; i < maxPreTLSCommands; i++ {
		if code, msg := s.cmd("NOOP"); code != 250 {
			t.Fatalf("NOOP %d: %d %s", i+1, code, msg)
		}
	}
	if code, msg := s.cmd("NOOP"); code != 421 || !strings.Contains(msg, "before STARTTLS") {
		t.Errorf("NOOP %d: %d %s, want 421", maxPreTLSCommands+1, code, msg)
	}
	if !closedByServer(s.conn) {
		t.Error("the connection is open after too many commands before STARTTLS")
	}
}

// TestMessagesBackToBack: a message, the next transaction pipelined right
// behind its end, then one sent with BDAT (read by go-smtp, not
// bodyReader): all three arrive whole, each on its own.
func TestMessagesBackToBack(t *testing.T) {
	r := startRelay(t, relayOpts{})
	s := loggedIn(t, r)
	msg := func(subject string) string {
		return strings.ReplaceAll(testMessage(testFrom, "a@practice.example", subject, ".dot line\r\nbody of "+subject), "\r\n.", "\r\n..")
	}
	io.WriteString(s.conn, "MAIL FROM:<"+testFrom+">\r\nRCPT TO:<a@practice.example>\r\nDATA\r\n")
	for _, want := range []int{250, 250, 354} {
		if code, m := s.read(); code != want {
			t.Fatalf("reply %d %s, want %d", code, m, want)
		}
	}
	io.WriteString(s.conn, msg("first")+"\r\n.\r\nMAIL FROM:<"+testFrom+">\r\nRCPT TO:<a@practice.example>\r\nDATA\r\n")
	for _, want := range []int{250, 250, 250, 354} {
		if code, m := s.read(); code != want {
			t.Fatalf("reply %d %s, want %d", code, m, want)
		}
	}
	io.WriteString(s.conn, msg("second")+"\r\n.\r\n")
	s.expect(250)
	third := testMessage(testFrom, "a@practice.example", "third", ".dot line, not stuffed in BDAT")
	s.cmd("MAIL FROM:<" + testFrom + ">")
	s.cmd("RCPT TO:<a@practice.example>")
	io.WriteString(s.conn, fmt.Sprintf("BDAT %d LAST\r\n%s", len(third), third))
	s.expect(250)
	waitFor(t, "three messages in the outbox", func() bool { return len(outboxFiles(t, r.dataDir)) == 3 })
	all := strings.Join(outboxFiles(t, r.dataDir), "\n")
	for _, want := range []string{"\r\n.dot line\r\nbody of first", "\r\n.dot line\r\nbody of second", "\r\n.dot line, not stuffed in BDAT"} {
		if !strings.Contains(all, want) {
			t.Errorf("no message has %q:\n%s", want, all)
		}
	}
}

// closedByServer: the server closed c (a read ends, and not by timing out).
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [512]byte
	for {
		_, err := c.Read(b[:])
		if err != nil {
			return !errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
}

// TestMaxConnections: beyond [smtp] max_connections, on either port, a
// client is told 421 and disconnected; a closed connection frees its slot.
func TestMaxConnections(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	r := startRelay(t, relayOpts{maxConns: 2, metrics: m})
	first := rawDial(t, r.addrs.Submission.String())
	rawDial(t, r.addrs.Submission.String())
	for _, addr := range []string{r.addrs.Submission.String(), r.addrs.Submissions.String()} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		if !strings.HasPrefix(line, "421 4.7.0 ") {
			t.Errorf("connection beyond the limit on %s: %q, want 421 4.7.0", addr, line)
		}
		if !closedByServer(c) {
			t.Errorf("connection beyond the limit on %s left open", addr)
		}
		c.Close()
	}
	if n := testutil.ToFloat64(m.refused.WithLabelValues("connect", "too_many_connections")); n != 2 {
		t.Errorf("refusals{connect,too_many_connections} = %v, want 2", n)
	}
	first.cmd("QUIT")
	waitFor(t, "a free slot", func() bool {
		c, err := net.Dial("tcp", r.addrs.Submission.String())
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(line, "220 ")
	})
}

// TestMaxConnectionsPerAddress: beyond [smtp] max_connections_per_ip, a
// client address is told 421 and disconnected while another address still
// gets in; the refused connection holds none of the server-wide slots.
func TestMaxConnectionsPerAddress(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	r := startRelay(t, relayOpts{maxConns: 3, maxPerAddr: 2, metrics: m})
	first := rawDial(t, r.addrs.Submission.String())
	rawDial(t, r.addrs.Submission.String())
	greeting := func(from, addr string) (string, net.Conn) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line, c
	}
	line, c := greeting("127.0.0.1", r.addrs.Submissions.String())
	if !strings.HasPrefix(line, "421 4.7.0 Too many connections from your address") {
		t.Errorf("third connection from 127.0.0.1: %q, want 421 4.7.0 Too many connections from your address", line)
	}
	if !closedByServer(c) {
		t.Errorf("connection beyond the address's limit left open")
	}
	if line, _ := greeting("127.0.0.2", r.addrs.Submission.String()); !strings.HasPrefix(line, "220 ") {
		t.Errorf("first connection from 127.0.0.2: %q, want the 220 greeting (the last server-wide slot)", line)
	}
	if n := testutil.ToFloat64(m.refused.WithLabelValues("connect", "too_many_from_address")); n != 1 {
		t.Errorf("refusals{connect,too_many_from_address} = %v, want 1", n)
	}
	first.cmd("QUIT")
	waitFor(t, "127.0.0.1's slot back", func() bool {
		line, c := greeting("127.0.0.1", r.addrs.Submission.String())
		c.Close()
		return strings.HasPrefix(line, "220 ")
	})
}

func TestClientPrefix(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"192.0.2.7:41234", "192.0.2.7/32"},
		{"[::ffff:192.0.2.7]:41234", "192.0.2.7/32"},
		{"[2001:db8:1:2:aaaa::1]:587", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:587", "2001:db8:1:2::/64"},
		{"[2001:db8:1:3::1]:587", "2001:db8:1:3::/64"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := clientPrefix(a).String(); got != tt.want {
			t.Errorf("clientPrefix(%s) = %s, want %s", tt.addr, got, tt.want)
		}
	}
}
