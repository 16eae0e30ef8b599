package submission

import (
	"bufio"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// TestEarlyTalker: a client that sends before the 220 greeting is answered
// 554 5.5.1 and cut off; one that waits is served as always, and so is an
// early talker when the check is off.
func TestEarlyTalker(t *testing.T) {
	tests := []struct {
		name      string
		wait      time.Duration
		talkFirst bool
		want      string // the first line the client reads
	}{
		// A long wait costs the early talker nothing: its bytes end the wait.
		{"talks first", 10 * time.Second, true, "554 5.5.1 "},
		{"waits for the greeting", 50 * time.Millisecond, false, "220 "},
		{"talks first, check off", 0, true, "220 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			r := startServer(t, serverOpts{greetingWait: tt.wait, metrics: m})
			conn, err := net.DialTimeout("tcp", r.addrs.Submission.String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			if tt.talkFirst {
				if _, err := io.WriteString(conn, "EHLO bot.example\r\nMAIL FROM:<"+testFrom+">\r\n"); err != nil {
					t.Fatal(err)
				}
			}
			tp := textproto.NewReader(bufio.NewReader(conn))
			line, err := tp.ReadLine()
			if err != nil || !strings.HasPrefix(line, tt.want) {
				t.Fatalf("first line %q (%v), want %q...", line, err, tt.want)
			}
			refused := promtest.ToFloat64(m.refused.WithLabelValues("connect", "early_talker"))
			if tt.want == "220 " {
				if refused != 0 {
					t.Errorf("early_talker refusals %v, want 0", refused)
				}
				if !tt.talkFirst {
					io.WriteString(conn, "EHLO client.test\r\n")
				}
				if code, _, err := textproto.NewReader(tp.R).ReadResponse(250); err != nil {
					t.Fatalf("EHLO: %d %v", code, err)
				}
				return
			}
			if _, err := tp.ReadLine(); err != io.EOF {
				t.Errorf("after the 554: %v, want the connection closed", err)
			}
			if refused != 1 {
				t.Errorf("early_talker refusals %v, want 1", refused)
			}
		})
	}
}
