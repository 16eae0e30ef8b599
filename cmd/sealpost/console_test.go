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
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
// 2,000 refusals this week, 200 keys, 1,000 queued messages. The admin's
// pages, which read the most.
func BenchmarkConsolePages(b *testing.B) {
	ctx := context.Background()
	dir := filepath.Join(b.TempDir(), "etc")
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"init", "--dir", dir, "--domain", "practice.example"}, strings.NewReader(""), &out, &errOut); code != 0 {
		b.Fatalf("init: %s", errOut.String())
	}
	cfg, err := config.Load(filepath.Join(dir, setup.ConfigFile))
	if err != nil {
		b.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("bench password"), bcrypt.MinCost)
	cfg.Console.Admins = []config.ConsoleAdminConfig{{Username: "office", PasswordHash: string(hash)}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
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
}

var benchCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

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
