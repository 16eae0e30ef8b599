package relay

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// TestDataDeadline: however the bytes trickle in (each read within the
// idle timeout), a message's transfer ends at the idle timeout plus the
// size limit at 64 KiB/s: the client is told 421 4.4.2 and the connection
// closes; nothing is queued or archived. A client at a normal pace is not
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
			r := startRelay(t, relayOpts{timeout: timeout, maxBytes: maxBytes})
			s := loggedIn(t, r)
			s.cmd("MAIL FROM:<" + testFrom + ">")
			s.cmd("RCPT TO:<colleague@practice.example>")
			began := time.Now()
			if tt.start != "" {
				if err := s.tp.PrintfLine("%s", tt.start); err != nil {
					t.Fatal(err)
				}
				if tt.start == "DATA" {
					s.expect(354)
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
					if _, err := io.WriteString(s.conn, b); err != nil {
						return
					}
					select {
					case <-tick.C:
					case <-stop:
						return
					}
				}
			}()
			code, msg := s.read()
			for code == 250 && tt.want != 250 && strings.Contains(msg, "Continue") {
				code, msg = s.read() // BDAT chunks taken so far
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
			s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := bufio.NewReader(s.conn).ReadByte(); err == nil {
				t.Error("the connection stayed open after 421")
			}
			if n := len(r.Queue()); n != 0 || len(r.archive.messages) != 0 {
				t.Errorf("%d queued, %d archived; want nothing", n, len(r.archive.messages))
			}
			if !strings.Contains(r.logs.String(), "a message did not arrive in time") {
				t.Error("the cut-off is not logged")
			}
		})
	}

	t.Run("BDAT chunk cut short", func(t *testing.T) {
		r := startRelay(t, relayOpts{})
		s := loggedIn(t, r)
		s.cmd("MAIL FROM:<" + testFrom + ">")
		s.cmd("RCPT TO:<colleague@practice.example>")
		part := header + "first line\r\n"
		fmt.Fprintf(s.conn, "BDAT %d LAST\r\n%s", len(part)+100, part)
		if err := s.conn.(*tls.Conn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, s.conn) // until the relay closes
		if n := len(r.Queue()); n != 0 || len(r.archive.messages) != 0 {
			t.Errorf("a chunk cut short by the client's disconnect was taken as the message: %d queued, %d archived", n, len(r.archive.messages))
		}
	})
}
