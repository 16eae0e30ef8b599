package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/internal/status"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
)

const testPassword = "console-test-password"

var testHash = func() string {
	h, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	return string(h)
}()

// The logins of every test console: one per role, and a second therapist.
var testLogins = []Login{
	{"office", testHash, Admin},
	{"anna", testHash, Therapist},
	{"ben", testHash, Therapist},
	{"audit", testHash, Auditor},
}

type fakeStatus struct{}

func (fakeStatus) Status(context.Context) *status.Report {
	now := time.Now()
	return &status.Report{Build: status.Build{Version: "test"}, Provider: "smtp.example.com:587",
		Relay:        &status.Relay{Since: now.Add(-time.Hour), ProviderLastOK: now.Add(-time.Minute)},
		Queue:        status.Queue{Messages: 2, Oldest: now.Add(-2 * time.Hour)},
		Verified:     &status.ArchiveCheck{Time: now.Add(-time.Hour), OK: true, Records: 40, HeadSeq: 40, Head: "ab12cd34ef56"},
		Certificates: []status.Expiry{{What: "certificate", Path: "/etc/sealpost/tls/cert.pem", Expires: now.AddDate(0, 2, 0)}},
		Disk:         &status.Disk{Path: "/var/lib/sealpost", Free: 40 << 30, Total: 100 << 30},
		Warnings:     []string{"a message has waited in the queue for 2h 0m (sealpost queue list)"}}
}

// fakeRefusals hold a refusal of anna's (for dora@client.example) and
// one of ben's.
type fakeRefusals struct{ list []Refusal }

func newFakeRefusals() *fakeRefusals {
	is := func(a string) func(string) bool { return func(x string) bool { return x == a } }
	now := time.Now()
	// Both today whatever the time of day the test runs.
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	ago := func(d time.Duration) time.Time {
		if t := now.Add(-d); t.After(midnight) {
			return t
		}
		return midnight
	}
	return &fakeRefusals{list: []Refusal{
		{Time: ago(time.Hour), Ref: "R7K2QX", Code: "nothing_on_file", Account: "anna", Recipient: true, Is: is("dora@client.example")},
		{Time: ago(time.Minute), Ref: "M4TJ7C", Code: "consent_expired", Account: "ben", Recipient: true, Is: is("eli@client.example"), Address: "eli@client.example"},
	}}
}

func (f *fakeRefusals) Refusals(_ context.Context, since time.Time) ([]Refusal, error) {
	var out []Refusal
	for _, r := range f.list {
		if !r.Time.Before(since) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeRefusals) Refusal(_ context.Context, ref string) ([]Refusal, error) {
	var out []Refusal
	for _, r := range f.list {
		if r.Ref == ref {
			out = append(out, r)
		}
	}
	return out, nil
}

type fakeRecorder struct {
	mu          sync.Mutex
	consents    []record.ConsentEvent
	scans       []*Evidence
	keys        [][]byte
	passphrases []string
}

func (f *fakeRecorder) RecordConsent(_ context.Context, ev record.ConsentEvent, scan *Evidence) (record.ConsentEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev.ID = int64(len(f.consents) + 1)
	f.consents, f.scans = append(f.consents, ev), append(f.scans, scan)
	return ev, nil
}

func (f *fakeRecorder) ImportKey(_ context.Context, data []byte, by string) ([]ImportedKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, data)
	if !bytes.Contains(data, []byte("BEGIN PGP PUBLIC KEY BLOCK")) {
		return nil, errors.New("no OpenPGP key in it")
	}
	return []ImportedKey{{Fingerprint: "ABCD", UserIDs: []string{"Dora <dora@client.example>"}, Status: "usable"}}, nil
}

func (f *fakeRecorder) SetPassphrase(_ context.Context, address, client, p, by string) (record.ConsentEvent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(p) < 8 {
		return record.ConsentEvent{}, errors.New("the passphrase is shorter than 8 characters")
	}
	f.passphrases = append(f.passphrases, address)
	return record.ConsentEvent{ID: 9}, nil
}

// fakeQueue holds a message of anna's and one of ben's.
type fakeQueue struct {
	mu      sync.Mutex
	list    []QueuedMessage
	retried []string
	dropped []string
}

func newFakeQueue() *fakeQueue {
	now := time.Now()
	return &fakeQueue{list: []QueuedMessage{
		{ID: "Q1ANNA", Account: "anna", Received: now.Add(-2 * time.Hour), Size: 4096, Attempts: 3, Pending: 1,
			NextAttempt: now.Add(time.Minute), LastReply: "451 4.3.0 mailbox busy"},
		{ID: "Q2BEN", Account: "ben", Received: now.Add(-time.Minute), Size: 2048, Attempts: 1, Pending: 2, HeldUntil: now.Add(10 * time.Hour)},
	}}
}

func (f *fakeQueue) List() []QueuedMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]QueuedMessage(nil), f.list...)
}

func (f *fakeQueue) Retry(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retried = append(f.retried, id)
	return nil
}

func (f *fakeQueue) Drop(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropped = append(f.dropped, id)
	return nil
}

// fakeClients are c000@client.example to c119@client.example.
type fakeClients struct{ asked []string }

func (f *fakeClients) SearchClients(_ context.Context, text, after string, limit int) ([]Client, string, error) {
	f.asked = append(f.asked, text+"|"+after)
	var out []Client
	for i := 0; i < 120; i++ {
		c := Client{Address: fmt.Sprintf("c%03d@client.example", i), Name: fmt.Sprintf("Client %d", i), Consent: "active", Signed: "2026-01-02",
			WouldGet: "consented", Why: "written consent on file"}
		if i%7 == 0 {
			c.Consent, c.WouldGet, c.Why = "none", "sealed", "passphrase on file"
			c.Passphrase = time.Now().Add(-time.Hour)
		}
		if c.Address > after && (text == "" || strings.Contains(c.Address, text) || strings.Contains(c.Name, text)) {
			out = append(out, c)
		}
	}
	if len(out) > limit {
		return out[:limit], out[limit-1].Address, nil
	}
	return out, "", nil
}

func (f *fakeClients) Client(_ context.Context, address string) (Client, []record.ConsentEvent, bool, error) {
	if address != "c007@client.example" {
		return Client{}, nil, false, nil
	}
	now := time.Now()
	return Client{Address: address, Name: "Client 7", Consent: "revoked", WouldGet: "sealed", Why: "passphrase on file", Passphrase: now},
		[]record.ConsentEvent{{Kind: "given", Signed: "2026-01-02", Evidence: "intake form", RecordedBy: "admin", RecordedAt: now.AddDate(0, -11, 0)},
			{Kind: "revoked", Reason: "asked by phone", RecordedBy: "office (console)", RecordedAt: now.AddDate(0, -1, 0)},
			{Kind: "passphrase-set", RecordedBy: "office (console)", RecordedAt: now}}, true, nil
}

func (f *fakeClients) ExpiringConsents(context.Context, int, int) ([]Client, bool, error) {
	return []Client{{Address: "c005@client.example", Name: "Client 5", Consent: "active", Expires: "2026-12-20"}}, true, nil
}

// proposedFpr is a key Dora offered; usableFpr one already in use.
const (
	proposedFpr = "AB12CD34EF56AB12CD34EF56AB12CD34EF56AB12"
	usableFpr   = "9999888877776666555544443333222211110000"
)

type fakeKeys struct {
	mu       sync.Mutex
	keys     []Key
	accepted []string
	removed  []string
	imported int
}

func newFakeKeys() *fakeKeys {
	now := time.Now()
	return &fakeKeys{keys: []Key{
		{Fingerprint: proposedFpr, UserIDs: []string{"Dora <dora@client.example>"}, Algorithm: "ed25519", Created: now.AddDate(0, -1, 0), Status: "proposed", Source: "autocrypt", Imported: now},
		{Fingerprint: usableFpr, UserIDs: []string{"eli@client.example"}, Algorithm: "rsa3072", Created: now.AddDate(-1, 0, 0), Status: "usable", Source: "admin", Imported: now},
	}}
}

func (f *fakeKeys) Keys(context.Context) ([]Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Key(nil), f.keys...), nil
}

func (f *fakeKeys) Import(_ context.Context, data []byte, by string) ([]ImportedKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !bytes.Contains(data, []byte("BEGIN PGP PUBLIC KEY BLOCK")) {
		return nil, errors.New("no OpenPGP key in it")
	}
	f.imported++
	return []ImportedKey{{Fingerprint: "1111", Status: "usable"}}, nil
}

func (f *fakeKeys) Accept(_ context.Context, fpr, by string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accepted = append(f.accepted, fpr)
	return nil
}

func (f *fakeKeys) Remove(_ context.Context, fpr, by string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, fpr)
	return nil
}

type fakeActivity struct {
	mu   sync.Mutex
	list []Activity
}

func (f *fakeActivity) Record(_ context.Context, a Activity) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, a)
	return nil
}

func (f *fakeActivity) Since(_ context.Context, since time.Time) ([]Activity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Activity
	for _, a := range f.list {
		if !a.Time.Before(since) {
			out = append(out, a)
		}
	}
	return out, nil
}

type fakeArchive struct{}

func (fakeArchive) State(context.Context) (ArchiveState, error) {
	return ArchiveState{Records: 4711, Head: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Holds: []Hold{{ID: "H-2026-1", Since: "2026-01-01", Clients: 2, Set: time.Now().AddDate(0, -1, 0)}}}, nil
}

func (fakeArchive) PruneDryRun(context.Context) ([]string, string, error) {
	return []string{"seg-00000001.log"}, "seg-00000002.log has records from 2019-03-02, within the retention", nil
}

func (fakeArchive) Summary(context.Context, time.Time) (Summary, error) {
	return Summary{Sent: 12, Received: 3, Delivered: 11, Bounced: 1, Refused: 2}, nil
}

func (fakeArchive) Timeline(_ context.Context, address string, limit int) ([]TimelineEntry, bool, error) {
	if address != "dora@client.example" {
		return nil, false, nil
	}
	now := time.Now()
	return []TimelineEntry{{Time: now.Add(-2 * time.Hour), Kind: "consent", Size: 800},
		{Time: now.Add(-time.Hour), Kind: "message", Direction: "outbound", Account: "anna", Size: 5000},
		{Time: now.Add(-time.Minute), Kind: "event", Event: "delivered", Size: 300}}, true, nil
}

// fakeAbsences hold absence 1, anna's from tomorrow for a week, and 2,
// ben's next month; "today" is the test's day in UTC.
type fakeAbsences struct {
	mu        sync.Mutex
	list      []Absence
	cancelled []int64
}

func newFakeAbsences() *fakeAbsences {
	day := func(n int) string { return time.Now().UTC().AddDate(0, 0, n).Format(time.DateOnly) }
	at := time.Now().Add(-24 * time.Hour)
	return &fakeAbsences{list: []Absence{
		{ID: 1, Account: "anna", From: day(1), Until: day(7), Note: "conference", RecordedBy: "anna (console)", RecordedAt: at},
		{ID: 2, Account: "ben", From: day(30), Until: day(40), RecordedBy: "root", RecordedAt: at},
	}}
}

func (f *fakeAbsences) Absences(_ context.Context, account string) ([]Absence, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Absence
	for _, a := range f.list {
		if a.Account == account && !slices.Contains(f.cancelled, a.ID) {
			out = append(out, a)
		}
	}
	return out, nil
}

func (f *fakeAbsences) AddAbsence(_ context.Context, a Absence) (Absence, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a.ID, a.RecordedAt = int64(len(f.list)+1), time.Now()
	f.list = append(f.list, a)
	return a, nil
}

func (f *fakeAbsences) CancelAbsence(_ context.Context, account string, id int64, by string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = append(f.cancelled, id)
	return nil
}

// Today: ben has no office hours.
func (f *fakeAbsences) Today(account string) (string, bool) {
	return time.Now().UTC().Format(time.DateOnly), account != "ben"
}

// memLoginCodes are the registry's login codes in memory; failWith makes
// every call fail (the database unreachable).
type memLoginCodes struct {
	mu       sync.Mutex
	m        map[string]LoginCode
	failWith error
}

func (c *memLoginCodes) LoginCode(_ context.Context, user string) (LoginCode, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[user]
	return e, ok, c.failWith
}

func (c *memLoginCodes) SetLoginCode(_ context.Context, user string, e LoginCode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failWith != nil {
		return c.failWith
	}
	if c.m == nil {
		c.m = map[string]LoginCode{}
	}
	c.m[user] = e
	return nil
}

func (c *memLoginCodes) UseLoginCodeStep(_ context.Context, user string, step int64) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[user]
	if c.failWith != nil || !ok || e.LastStep >= step {
		return false, c.failWith
	}
	e.LastStep = step
	c.m[user] = e
	return true, nil
}

func (c *memLoginCodes) RemoveLoginCode(_ context.Context, user string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, user)
	return c.failWith
}

func (c *memLoginCodes) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failWith = err
}

// testConsole is a console over TLS with fakes behind it and a clock the
// test moves.
type testConsole struct {
	*Server
	url      string
	ts       *httptest.Server
	refusals *fakeRefusals
	recorder *fakeRecorder
	queue    *fakeQueue
	clients  *fakeClients
	keys     *fakeKeys
	activity *fakeActivity
	absences *fakeAbsences
	codes    *memLoginCodes
	logs     *testutil.LockedBuffer

	mu  sync.Mutex
	now time.Time
}

func startConsole(t *testing.T) *testConsole {
	t.Helper()
	tc := &testConsole{refusals: newFakeRefusals(), recorder: &fakeRecorder{}, queue: newFakeQueue(),
		clients: &fakeClients{}, keys: newFakeKeys(), activity: &fakeActivity{}, absences: newFakeAbsences(), codes: &memLoginCodes{},
		logs: &testutil.LockedBuffer{}, now: time.Now()}
	srv, err := New(Options{Logins: testLogins, Status: fakeStatus{}, Refusals: tc.refusals, Recorder: tc.recorder, Queue: tc.queue, Clients: tc.clients, Keys: tc.keys, Archive: fakeArchive{}, Activity: tc.activity, Absences: tc.absences,
		LoginCodes: tc.codes,
		Logger:     slog.New(slog.NewTextHandler(tc.logs, nil)), Now: tc.clock, LoginDelay: func(context.Context, time.Duration) {}})
	if err != nil {
		t.Fatal(err)
	}
	tc.Server = srv
	tc.ts = httptest.NewTLSServer(srv.Handler())
	t.Cleanup(tc.ts.Close)
	tc.url = tc.ts.URL
	return tc
}

func (tc *testConsole) clock() time.Time {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.now
}

func (tc *testConsole) advance(d time.Duration) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.now = tc.now.Add(d)
}

// browser is a client with its own cookies that does not follow redirects.
type browser struct {
	t    *testing.T
	tc   *testConsole
	c    *http.Client
	csrf string
}

func (tc *testConsole) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: tc.ts.Client().Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{t: t, tc: tc, c: c}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches a page and remembers the CSRF token it carries.
func (b *browser) get(path string) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Get(b.tc.url + path)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := csrfField.FindSubmatch(body); m != nil {
		b.csrf = string(m[1])
	}
	return resp, string(body)
}

// post sends a form; the session's CSRF token is added unless the form
// has its own "csrf" (or "-" to leave it out).
func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	form = withCSRF(form, b.csrf)
	resp, err := b.c.PostForm(b.tc.url+path, form)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func withCSRF(form url.Values, token string) url.Values {
	out := url.Values{}
	for k, v := range form {
		out[k] = v
	}
	switch out.Get("csrf") {
	case "":
		out.Set("csrf", token)
	case "-":
		out.Del("csrf")
	}
	return out
}

// postFile sends a multipart form with one file.
func (b *browser) postFile(path string, form url.Values, field, filename string, data []byte) (*http.Response, string) {
	b.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, vs := range withCSRF(form, b.csrf) {
		for _, v := range vs {
			mw.WriteField(k, v)
		}
	}
	if field != "" {
		fw, _ := mw.CreateFormFile(field, filename)
		fw.Write(data)
	}
	mw.Close()
	resp, err := b.c.Post(b.tc.url+path, mw.FormDataContentType(), &body)
	if err != nil {
		b.t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(out)
}

// login logs in as user and loads Today.
func (b *browser) login(user string) *browser {
	b.t.Helper()
	b.get("/login")
	resp, body := b.post("/login", url.Values{"username": {user}, "password": {testPassword}, "csrf": {b.csrf}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/today" {
		b.t.Fatalf("login as %s: %s\n%s", user, resp.Status, body)
	}
	b.get("/today")
	return b
}

func (tc *testConsole) loggedIn(t *testing.T, user string) *browser { return tc.browser(t).login(user) }

func location(resp *http.Response) string { return resp.Header.Get("Location") }

func contains(body string, words ...string) []string {
	var missing []string
	for _, w := range words {
		if !strings.Contains(body, w) {
			missing = append(missing, w)
		}
	}
	return missing
}
