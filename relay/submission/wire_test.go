package submission

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// TestDataDeadline: however the bytes trickle in (each read within the
// idle timeout), a message's transfer ends at the idle timeout plus the
// size limit at 64 KiB/s: the client is told 421 4.4.2 and the connection
// closes; nothing is taken in. A client at a normal pace is not
// affected, and a BDAT chunk cut short by a disconnect is not a message.
func TestDataDeadline(t *testing.T) {
	const timeout, maxBytes = time.Second, 4096
	limit := dataDeadline(timeout, maxBytes)
	if limit != timeout+62500*time.Microsecond {
		t.Fatalf("dataDeadline(1s, 4096) = %v", limit)
	}
	header := "From: " + testFrom + "\r\nTo: colleague@practice.example\r\nSubject: s\r\n\r\n"
	tests := []struct {
		name  string
		start string                     // after RCPT; "" for none
		drip  func(i int) (string, bool) // what to send at the i-th tick; false: stop
		want  int                        // the reply's code
	}{
		{"DATA, a byte every 100 ms", "DATA", func(i int) (string, bool) { return header[i%len(header) : i%len(header)+1], true }, 421},
		{"BDAT, a one-byte chunk every 100 ms", "", func(i int) (string, bool) { return "BDAT 1\r\nx", true }, 421},
		{"BDAT, one chunk a byte every 100 ms", "BDAT 3000 LAST", func(i int) (string, bool) { return "y", true }, 421},
		{"DATA at a normal pace", "DATA", func(i int) (string, bool) {
			if i > 0 {
				return "", false
			}
			return header + "body\r\n.\r\n", true
		}, 250},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startServer(t, serverOpts{timeout: timeout, maxBytes: maxBytes})
			s := loggedIn(t, r)
			s.Cmd("MAIL FROM:<" + testFrom + ">")
			s.Cmd("RCPT TO:<colleague@practice.example>")
			began := time.Now()
			if tt.start != "" {
				if err := s.Text.PrintfLine("%s", tt.start); err != nil {
					t.Fatal(err)
				}
				if tt.start == "DATA" {
					s.Expect(354)
				}
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for i := 0; ; i++ {
					b, ok := tt.drip(i)
					if !ok {
						return
					}
					if _, err := io.WriteString(s.Conn, b); err != nil {
						return
					}
					select {
					case <-tick.C:
					case <-stop:
						return
					}
				}
			}()
			code, msg := s.Read()
			for code == 250 && tt.want != 250 && strings.Contains(msg, "Continue") {
				code, msg = s.Read() // BDAT chunks taken so far
			}
			elapsed := time.Since(began)
			if code != tt.want {
				t.Fatalf("reply %d %s after %v, want %d", code, msg, elapsed, tt.want)
			}
			if tt.want != 421 {
				return
			}
			if !strings.HasPrefix(msg, "4.4.2 ") || elapsed < limit || elapsed > limit+5*time.Second {
				t.Errorf("reply %d %s after %v; want 421 4.4.2 at %v", code, msg, elapsed, limit)
			}
			s.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := bufio.NewReader(s.Conn).ReadByte(); err == nil {
				t.Error("the connection stayed open after 421")
			}
			if n := len(r.relay.accepted()); n != 0 {
				t.Errorf("%d taken in; want nothing", n)
			}
			if !strings.Contains(r.logs.String(), "a message did not arrive in time") {
				t.Error("the cut-off is not logged")
			}
		})
	}

	t.Run("BDAT chunk cut short", func(t *testing.T) {
		r := startServer(t, serverOpts{})
		s := loggedIn(t, r)
		s.Cmd("MAIL FROM:<" + testFrom + ">")
		s.Cmd("RCPT TO:<colleague@practice.example>")
		part := header + "first line\r\n"
		fmt.Fprintf(s.Conn, "BDAT %d LAST\r\n%s", len(part)+100, part)
		if err := s.Conn.(*tls.Conn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		s.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, s.Conn) // until the relay closes
		if n := len(r.relay.accepted()); n != 0 {
			t.Errorf("a chunk cut short by the client's disconnect was taken as the message: %d taken in", n)
		}
	})
}

// TestMessagesBackToBack: a message, the next transaction pipelined right
// behind its end, then one sent with BDAT (read by go-smtp, not
// bodyReader): all three arrive whole, each on its own.
func TestMessagesBackToBack(t *testing.T) {
	r := startServer(t, serverOpts{})
	s := loggedIn(t, r)
	msg := func(subject string) string {
		return strings.ReplaceAll(testMessage(testFrom, "a@practice.example", subject, ".dot line\r\nbody of "+subject), "\r\n.", "\r\n..")
	}
	io.WriteString(s.Conn, "MAIL FROM:<"+testFrom+">\r\nRCPT TO:<a@practice.example>\r\nDATA\r\n")
	for _, want := range []int{250, 250, 354} {
		if code, m := s.Read(); code != want {
			t.Fatalf("reply %d %s, want %d", code, m, want)
		}
	}
	io.WriteString(s.Conn, msg("first")+"\r\n.\r\nMAIL FROM:<"+testFrom+">\r\nRCPT TO:<a@practice.example>\r\nDATA\r\n")
	for _, want := range []int{250, 250, 250, 354} {
		if code, m := s.Read(); code != want {
			t.Fatalf("reply %d %s, want %d", code, m, want)
		}
	}
	io.WriteString(s.Conn, msg("second")+"\r\n.\r\n")
	s.Expect(250)
	third := testMessage(testFrom, "a@practice.example", "third", ".dot line, not stuffed in BDAT")
	s.Cmd("MAIL FROM:<" + testFrom + ">")
	s.Cmd("RCPT TO:<a@practice.example>")
	io.WriteString(s.Conn, fmt.Sprintf("BDAT %d LAST\r\n%s", len(third), third))
	s.Expect(250)
	testutil.WaitFor(t, "three messages taken in", func() bool { return len(r.relay.accepted()) == 3 })
	all := strings.Join(r.relay.accepted(), "\n")
	for _, want := range []string{"\r\n.dot line\r\nbody of first", "\r\n.dot line\r\nbody of second", "\r\n.dot line, not stuffed in BDAT"} {
		if !strings.Contains(all, want) {
			t.Errorf("no message has %q:\n%s", want, all)
		}
	}
}
