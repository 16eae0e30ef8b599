package auditimap

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// rawSession is an IMAP connection spoken line by line, for what
// imapclient does not send (STATUS RECENT, as Thunderbird polls folders).
type rawSession struct {
	t    *testing.T
	conn *tls.Conn
	r    *bufio.Reader
	n    int
}

func rawLogin(t *testing.T, addr string, tc *tls.Config) *rawSession {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	s := &rawSession{t: t, conn: conn, r: bufio.NewReader(conn)}
	if greeting, err := s.r.ReadString('\n'); err != nil || !strings.HasPrefix(greeting, "* OK") {
		t.Fatalf("greeting %q: %v", greeting, err)
	}
	if lines, status := s.cmd("LOGIN auditor audit-pw"); !strings.HasPrefix(status, "OK") {
		t.Fatalf("LOGIN: %s %q", status, lines)
	}
	return s
}

// cmd sends one command and returns the untagged lines and the tagged
// status ("OK ...", "NO ...", "BAD ..."); a dropped connection is status
// "dropped: ERROR".
func (s *rawSession) cmd(line string) (untagged []string, status string) {
	s.t.Helper()
	s.n++
	tag := fmt.Sprintf("t%d", s.n)
	if _, err := io.WriteString(s.conn, tag+" "+line+"\r\n"); err != nil {
		return nil, "dropped: " + err.Error()
	}
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return untagged, "dropped: " + err.Error()
		}
		l = strings.TrimRight(l, "\r\n")
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest
		}
		untagged = append(untagged, l)
	}
}

// TestStatusItems: every STATUS data item of IMAP4rev1 (RFC 3501) and
// IMAP4rev2 (RFC 9051), and those of the extensions go-imap parses, is
// answered: Thunderbird polls folders with STATUS ... (RECENT), which made
// the server panic and drop the connection. A panic's text reaches the log.
func TestStatusItems(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	first := f.outbound(t, "q1", "One", "one", at, consented(client))
	second := f.inbound(t, "i1", "Two", "two", at.Add(time.Minute))
	logs := &testutil.LockedBuffer{}
	addr, tc := f.serve(t, logs)
	s := rawLogin(t, addr, tc)
	size := len(first.body) + len(second.body)
	for _, tt := range []struct {
		items string
		want  string // a regular expression for the untagged STATUS line's list
	}{
		{"RECENT", `^\(RECENT 0\)$`},
		{"MESSAGES RECENT UNSEEN", `^\(MESSAGES 2 UNSEEN 2 RECENT 0\)$`},
		{"MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT", fmt.Sprintf(`^\(MESSAGES 2 UIDNEXT \d+ UIDVALIDITY 7 UNSEEN 2 DELETED 0 SIZE %d RECENT 0\)$`, size)},
		{"APPENDLIMIT", `^\(APPENDLIMIT 0\)$`},
		{"DELETED-STORAGE", `^\(DELETED-STORAGE 0\)$`},
	} {
		lines, status := s.cmd(`STATUS "` + clientBoxName + `" (` + tt.items + `)`)
		if !strings.HasPrefix(status, "OK") {
			t.Fatalf("STATUS (%s): %s; log:\n%s", tt.items, status, logs.String())
		}
		if len(lines) != 1 || !strings.HasPrefix(lines[0], `* STATUS "`+clientBoxName+`" `) {
			t.Fatalf("STATUS (%s): %q", tt.items, lines)
		}
		list := strings.TrimPrefix(lines[0], `* STATUS "`+clientBoxName+`" `)
		if !regexp.MustCompile(tt.want).MatchString(list) {
			t.Errorf("STATUS (%s): %s, want %s", tt.items, list, tt.want)
		}
	}
	// An item nobody defined is a BAD, and the connection stays.
	if _, status := s.cmd("STATUS All (BOGUS)"); !strings.HasPrefix(status, "BAD") {
		t.Errorf("STATUS (BOGUS): %s, want BAD", status)
	}
	if _, status := s.cmd("NOOP"); !strings.HasPrefix(status, "OK") {
		t.Errorf("the connection did not survive the STATUS commands: %s", status)
	}
	if l := logs.String(); strings.Contains(l, "panic") {
		t.Errorf("the server panicked:\n%s", l)
	}
}

// TestLibraryLogLines: what go-imap logs (a panic in a command, a command
// that failed) reaches the log with its text, on one line, and the stack
// of a panic beside it.
func TestLibraryLogLines(t *testing.T) {
	logs := &testutil.LockedBuffer{}
	l := newTestLogger(logs)
	l.Printf("panic handling command: %v\n%s", "runtime error: invalid memory address or nil pointer dereference", []byte("goroutine 7 [running]:\nmain.f()\n\t/x.go:1"))
	l.Printf("handling %v command: %v", "FETCH", io.ErrUnexpectedEOF)
	got := logs.String()
	for _, want := range []string{
		`detail="panic handling command: runtime error: invalid memory address or nil pointer dereference"`,
		`stack="goroutine 7 [running]:`,
		`detail="handling FETCH command: unexpected EOF"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the log lacks %s:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 2 {
		t.Errorf("%d log lines for two messages:\n%s", n, got)
	}
}

func newTestLogger(w io.Writer) slogLogger {
	return slogLogger{slog.New(slog.NewTextHandler(w, nil))}
}
