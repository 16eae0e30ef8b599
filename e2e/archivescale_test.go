package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/record"
)

// The archive at scale (issue 20): SEALPOST_ARCHIVE_SCALE=10000,100000
// builds, for each number of messages, an archive of that many messages
// and a delivery event for each through the archive package's writer (as
// the relay writes it, group commits and the index included; through SMTP
// a million would take hours), then measures what an admin and an auditor
// wait for and the memory it takes, and prints the README's table:
//
//	SEALPOST_E2E=require SEALPOST_ARCHIVE_SCALE=10000,100000 go test ./e2e -run TestArchiveScale -v -timeout 2h
//
// One client has 50 messages (export --client); a message is recorded
// every 150 s of the archive's clock, 576 a day (export of one day).
func TestArchiveScale(t *testing.T) {
	sizes := os.Getenv("SEALPOST_ARCHIVE_SCALE")
	if sizes == "" {
		t.Skip("set SEALPOST_ARCHIVE_SCALE=10000,100000 to run")
	}
	var rows []scaleRow
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1000 {
			t.Fatalf("SEALPOST_ARCHIVE_SCALE: %q is not a number of messages (at least 1000)", s)
		}
		rows = append(rows, measureScale(t, n))
	}
	var b strings.Builder
	b.WriteString("| operation |")
	for _, r := range rows {
		fmt.Fprintf(&b, " %s msgs |", r.label)
	}
	b.WriteString("\n| --- |" + strings.Repeat(" ---: |", len(rows)) + "\n")
	for i, op := range scaleOps {
		fmt.Fprintf(&b, "| %s |", op)
		for _, r := range rows {
			fmt.Fprintf(&b, " %s |", r.cells[i])
		}
		b.WriteString("\n")
	}
	fmt.Println(b.String())
}

var scaleOps = []string{
	"archive written (records, size, time)",
	"`archive verify`",
	"`archive export --client X` (50 messages)",
	"`archive export --since D --until D` (1 day, about 600 messages)",
	"`archive reindex`",
	"`sealpost serve` start until it accepts",
	"`sealpost serve` stop after SIGTERM",
	"`archive serve-imap` until LOGIN+SELECT INBOX answers",
	"serve-imap: every message in its mailboxes (loaded in the background)",
	"serve-imap, loaded: SELECT All / NOOP",
	"serve-imap peak RSS",
}

type scaleRow struct {
	label string
	cells []string
}

const scaleClient = "x-client@clients.example"

func measureScale(t *testing.T, n int) scaleRow {
	row := scaleRow{label: fmt.Sprintf("%dk", n/1000)}
	if n%1000 != 0 {
		row.label = strconv.Itoa(n)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("audit-pw"), bcrypt.MinCost)
	t0 := time.Date(2020, 1, 6, 0, 0, 0, 0, time.UTC)
	var built string
	r := StartRelay(t, RelayOptions{Quiet: true, Env: []string{"TZ=UTC"},
		Sections: fmt.Sprintf("[[archive.viewer]]\nusername = \"auditor\"\npassword_hash = %q\n", hash),
		Setup:    func(r *Relay) { built = buildScaleArchive(t, r.DataDir, n, t0) }})
	row.cells = append(row.cells, built)
	key := filepath.Join(r.DataDir, "archive-private-key.asc")
	env := []string{"TZ=UTC"}
	run := func(args ...string) string {
		t.Helper()
		d, rss, out := timed(t, env, append(args, "-c", r.Config)...)
		t.Logf("%s: %s, %d MB\n%s", strings.Join(args[:2], " "), d, rss>>20, lastLines(out, 3))
		return fmt.Sprintf("%s s, %d MB", secs(d), rss>>20)
	}
	// The relay's start and stop, with the index as the relay keeps it.
	r.Stop(t)
	start := time.Now()
	r.Start(t)
	startTook := time.Since(start)
	start = time.Now()
	r.Stop(t)
	stopTook := time.Since(start)

	row.cells = append(row.cells, run("archive", "verify"))
	day := t0.Add(time.Duration(n/2) * 150 * time.Second).Format("2006-01-02")
	exp := func(name string, args ...string) string {
		out := filepath.Join(t.TempDir(), name)
		cell := run(append([]string{"archive", "export", "--key", key, "--out", out}, args...)...)
		files, _ := filepath.Glob(filepath.Join(out, "messages", "*.eml"))
		return fmt.Sprintf("%s (%d)", cell, len(files))
	}
	row.cells = append(row.cells, exp("client", "--client", scaleClient), exp("day", "--since", day, "--until", day))
	row.cells = append(row.cells, run("archive", "reindex"))
	row.cells = append(row.cells, secs(startTook)+" s", secs(stopTook)+" s")
	row.cells = append(row.cells, measureView(t, r, key, n)...)
	return row
}

// buildScaleArchive writes n messages and their delivery events into the
// archive of dataDir, as the relay would: from many goroutines, so that
// records share fsyncs.
func buildScaleArchive(t *testing.T, dataDir string, n int, t0 time.Time) string {
	t.Helper()
	pub, _, err := archive.EnsureKey(dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	var submitted atomic.Int64
	clock := func() time.Time { return t0.Add(time.Duration(submitted.Load()) * 150 * time.Second) }
	a, err := archive.Open(archive.Options{Dir: filepath.Join(dataDir, "archive"), PublicKey: pub, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx := context.Background()
	jobs := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := scaleMessage(ctx, a, i, n, clock()); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for i := range n {
		submitted.Store(int64(i))
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	if err := a.IndexCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	seq, _ := a.ChainHead()
	size, _ := a.Size()
	took := time.Since(start)
	a.Close()
	return fmt.Sprintf("%d records, %d MB, %s s", seq, size>>20, secs(took))
}

func scaleMessage(ctx context.Context, a *archive.Archive, i, n int, now time.Time) error {
	client := fmt.Sprintf("client%04d@clients.example", i%2000)
	if i%(n/50) == 0 {
		client = scaleClient
	}
	id := fmt.Sprintf("scale%07d", i)
	body := fmt.Sprintf("From: Maria <therapist@practice.example>\r\nTo: <%s>\r\nSubject: Session %d\r\nMessage-ID: <%s@practice.example>\r\nDate: %s\r\n\r\n%s",
		client, i, id, now.Format(time.RFC1123Z), strings.Repeat("Notes of the session, confidential.\r\n", 20))
	m := archive.Message{ID: id, Time: now, Direction: archive.Outbound, Account: "therapist", Sender: "therapist@practice.example",
		Decisions: []record.Decision{{Recipient: client, Address: client, Protection: record.Consented, Reason: "consent"}}}
	if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
		return err
	}
	return a.RecordEvent(ctx, archive.Event{MessageID: id, Time: now, Kind: archive.Delivered, Recipients: []string{client}, Reply: "250 2.0.0 OK"})
}

// measureView starts serve-imap and logs in as Thunderbird would.
func measureView(t *testing.T, r *Relay, key string, n int) []string {
	t.Helper()
	port := FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(Sealpost(t), "archive", "serve-imap", "--key", key, "--listen", addr, "-c", r.Config)
	logs := &strings.Builder{}
	var logMu sync.Mutex
	cmd.Stdout, cmd.Stderr = lockedWriter{&logMu, logs}, lockedWriter{&logMu, logs}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(r.CA)
	pool.AppendCertsFromPEM(ca)
	var c *imapclient.Client
	for {
		var err error
		if c, err = imapclient.DialTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}); err == nil {
			break
		}
		if time.Since(start) > 10*time.Minute || cmd.ProcessState != nil {
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("serve-imap did not listen: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close()
	if err := c.Login("auditor", "audit-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	ready := time.Since(start)
	for {
		st, err := c.Status("All", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if *st.NumMessages == uint32(n) {
			break
		}
		if time.Since(start) > 30*time.Minute {
			t.Fatalf("serve-imap shows %d of %d messages after 30 minutes", *st.NumMessages, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	loadedIn := time.Since(start)
	start = time.Now()
	sel, err := c.Select("All", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	selectAll := time.Since(start)
	if want := uint32(n); sel.NumMessages != want {
		t.Errorf("All holds %d messages, want %d", sel.NumMessages, want)
	}
	var noop time.Duration
	for range 5 {
		start = time.Now()
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		noop += time.Since(start)
	}
	rss, _ := procStats(cmd.Process.Pid)
	return []string{secs(ready) + " s", secs(loadedIn) + " s", fmt.Sprintf("%s s / %s s", secs(selectAll), secs(noop/5)), fmt.Sprintf("%d MB", rss>>20)}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// timed runs sealpost with args and returns its wall time, peak RSS and
// output.
func timed(t *testing.T, env []string, args ...string) (time.Duration, int64, string) {
	t.Helper()
	cmd := exec.Command(Sealpost(t), args...)
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("sealpost %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var rss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = ru.Maxrss << 10
	}
	return d, rss, string(out)
}

func secs(d time.Duration) string {
	switch {
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.3f", d.Seconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.2f", d.Seconds())
	}
	return fmt.Sprintf("%.1f", d.Seconds())
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
