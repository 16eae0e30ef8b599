package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/console"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/setup"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
)

// benchQueue is a queue of n messages of four accounts.
type benchQueue struct{ list []console.QueuedMessage }

func (q *benchQueue) List() []console.QueuedMessage { return q.list }
func (q *benchQueue) Retry(string) error            { return nil }
func (q *benchQueue) Drop(string) error             { return nil }

// BenchmarkConsolePages is each page's server time (the handler, without
// TLS or the network) on a practice the size the issue names: 100,000
// clients in the registry (and their consent events in the archive),
// 2,000 refusals this week, 200 keys, 1,000 queued messages, and with
// SEALPOST_CONSOLE_BENCH_MESSAGES a year of messages before them. The
// admin's pages, which read the most.
func BenchmarkConsolePages(b *testing.B) {
	ctx := context.Background()
	cfg, hash := initPractice(b, "bench password")
	cfg.Console.Admins = []config.ConsoleAdminConfig{{Username: "office", PasswordHash: string(hash)}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if n, _ := strconv.Atoi(os.Getenv("SEALPOST_CONSOLE_BENCH_MESSAGES")); n > 0 {
		fillBenchArchive(b, cfg, n, time.Now())
	}
	pa, err := openPolicyAndArchive(ctx, cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pa.close)

	var csv strings.Builder
	csv.WriteString("address,name,signed,evidence,expires\n")
	now := time.Now()
	for i := 0; i < 100000; i++ {
		expires := ""
		if i%50 == 7 {
			expires = now.AddDate(0, 0, 1+i%29).Format(time.DateOnly)
		}
		fmt.Fprintf(&csv, "client%06d@client.example,Client %d (CH-%d),2026-01-02,intake form,%s\n", i, i, i, expires)
	}
	if _, err := pa.registry.Import(ctx, strings.NewReader(csv.String()), "admin"); err != nil {
		b.Fatal(err)
	}
	if err := pa.syncConsent(ctx); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 2000; i += 16 {
				pa.arch.RecordRefusal(ctx, archive.RefusalRecord{Time: now.Add(-time.Duration(i) * time.Minute), Account: fmt.Sprintf("therapist%d", i%4),
					Recipient: fmt.Sprintf("nobody%d@client.example", i), Reason: "nothing on file", Ref: record.NewRef(), Code: "nothing_on_file"})
			}
		}()
	}
	wg.Wait()
	// One whose recipient the registry knows: its page looks the address up.
	known := archive.RefusalRecord{Time: now, Account: "therapist1", Recipient: "client099999@client.example", Reason: "consent expired",
		Ref: record.NewRef(), Code: "consent_expired"}
	if err := pa.arch.RecordRefusal(ctx, known); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := pa.keys.Import(ctx, bytes.NewReader(testutil.ArmoredPublicKey(b, testutil.OpenPGPKey(b, "Key", fmt.Sprintf("key%d@client.example", i)))), "bench"); err != nil {
			b.Fatal(err)
		}
	}
	q := &benchQueue{}
	for i := 0; i < 1000; i++ {
		q.list = append(q.list, console.QueuedMessage{ID: fmt.Sprintf("Q%05d", i), Account: fmt.Sprintf("therapist%d", i%4), Received: now.Add(-time.Duration(i) * time.Second),
			Size: 4096, Attempts: 2, Pending: 1, LastReply: "451 4.3.0 try later"})
	}
	relay := func() relayState { return relayState{Since: now, Queue: queueState{Messages: len(q.list)}} }
	srv, err := newConsole(cfg, nil, pa, relay, q, log)
	if err != nil {
		b.Fatal(err)
	}
	// A relay's index keeps up with its writes; here it would still be
	// indexing the consents and refusals while the first pages are timed.
	if err := pa.arch.IndexCaughtUp(ctx); err != nil {
		b.Fatal(err)
	}
	// The registry makes its names' index at the first search by name
	// (once per registry: BenchmarkSearchClientsFirst times it).
	if _, _, err := pa.registry.SearchClients(ctx, "warm", "", 1, now); err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	cookie := benchLogin(b, h, "office", "bench password")
	found, _ := archive.FindRefusals(cfg.ArchiveDir(), "", now.AddDate(0, 0, -1))
	records, _ := pa.arch.ChainHead()
	b.Logf("%d records in the archive, %d refusals in the last day", records, len(found))
	for _, page := range []string{"/today", "/refusals", "/refusals?days=30", "/refusals/" + found[0].Ref, "/refusals/" + known.Ref, "/clients", "/clients?after=client050000%40client.example",
		"/clients?q=client077", "/clients?q=CH-77777", "/keys", "/archive", "/activity", "/queue"} {
		b.Run(page, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "https://console.test"+page, nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d\n%s", page, rec.Code, rec.Body)
				}
			}
		})
	}
	// Today counts again only after the chain grew, which on a busy day is
	// at nearly every visit: the count itself, without the page.
	b.Run("today's counts", func(b *testing.B) {
		midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
		for b.Loop() {
			if _, err := archive.CountSince(ctx, cfg.ArchiveDir(), midnight); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// fillBenchArchive writes n messages to clients, each with its delivery
// event, over the year before now (SEALPOST_CONSOLE_BENCH_MESSAGES=500000
// makes the 1,000,000 archive records), through the archive's
// writer with its group commits, as the relay would have.
func fillBenchArchive(b *testing.B, cfg *config.Config, n int, now time.Time) {
	pub, _, err := archive.EnsureKey(cfg.DataDir, cfg.Archive.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	var written atomic.Int64
	start := now.AddDate(-1, 0, 0)
	clock := func() time.Time {
		return start.Add(time.Duration(written.Load()) * (365 * 24 * time.Hour / time.Duration(n)))
	}
	a, err := archive.Open(archive.Options{Dir: cfg.ArchiveDir(), PublicKey: pub, Now: clock})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	body := "From: <therapist0@practice.example>\r\nSubject: Session\r\n\r\n" + strings.Repeat("Notes of the session, confidential.\r\n", 20)
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < n; i += 64 {
				client := fmt.Sprintf("client%06d@client.example", i%100000)
				id := fmt.Sprintf("bench%07d", i)
				m := archive.Message{ID: id, Time: clock(), Direction: archive.Outbound, Account: fmt.Sprintf("therapist%d", i%4), Sender: "therapist0@practice.example",
					Decisions: []record.Decision{{Recipient: client, Address: client, Protection: record.Consented, Reason: "consent"}}}
				err := a.RecordMessage(ctx, m, strings.NewReader(body))
				if err == nil {
					err = a.RecordEvent(ctx, archive.Event{MessageID: id, Time: clock(), Kind: archive.Delivered, Recipients: []string{client}, Reply: "250 2.0.0 OK"})
				}
				if err != nil {
					failed.Store(err)
					return
				}
				written.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	if err := a.IndexCaughtUp(ctx); err != nil {
		b.Fatal(err)
	}
	if err := a.Close(); err != nil {
		b.Fatal(err)
	}
}

var benchCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// initPractice is the configuration `sealpost init` writes for
// practice.example in a folder of the test's, and a bcrypt hash of pw for
// the logins the test gives it.
func initPractice(tb testing.TB, pw string) (*config.Config, []byte) {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "etc")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"init", "--dir", dir, "--domain", "practice.example"}, strings.NewReader(""), &out, &errOut); code != 0 {
		tb.Fatalf("init: %s", errOut.String())
	}
	cfg, err := config.Load(filepath.Join(dir, setup.ConfigFile))
	if err != nil {
		tb.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg, hash
}

// benchLogin logs in through the login form and returns the session cookie.
func benchLogin(b testing.TB, h http.Handler, user, pw string) *http.Cookie {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://console.test/login", nil))
	token := benchCSRF.FindStringSubmatch(rec.Body.String())
	if token == nil {
		b.Fatalf("no login form:\n%s", rec.Body)
	}
	form := url.Values{"username": {user}, "password": {pw}, "csrf": {token[1]}}
	req := httptest.NewRequest(http.MethodPost, "https://console.test/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range rec.Result().Cookies() {
		req.AddCookie(c)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == "__Host-sealpost-session" && c.Value != "" {
			return c
		}
	}
	b.Fatalf("login: %d\n%s", rec.Code, rec.Body)
	return nil
}
