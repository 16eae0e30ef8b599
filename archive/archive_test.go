package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/record"
)

type fixture struct {
	dataDir string
	dir     string
	pub     openpgp.EntityList
	priv    openpgp.EntityList
	now     time.Time
	mu      sync.Mutex
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{dataDir: t.TempDir(), now: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	f.dir = filepath.Join(f.dataDir, "archive")
	pub, warning, err := EnsureKey(f.dataDir, "")
	if err != nil || !strings.Contains(warning, "move it offline") {
		t.Fatalf("EnsureKey: %v %q", err, warning)
	}
	f.pub = pub
	if f.priv, err = LoadPrivateKey(filepath.Join(f.dataDir, PrivateKeyFile), nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *fixture) open(t testing.TB, segBytes int64) *Archive {
	t.Helper()
	a, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock, SegmentBytes: segBytes})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func testMessage(i int, client string) (Message, string) {
	id := fmt.Sprintf("msg%04d", i)
	body := fmt.Sprintf("From: Maria <therapist@practice.example>\r\nTo: %s\r\nSubject: Session %d notes\r\nMessage-ID: <%s@practice.example>\r\n\r\nConfidential body %d.\r\n", client, i, id, i)
	m := Message{ID: id, Time: time.Date(2026, 11, 22, 9, 0, i, 0, time.UTC), Direction: Outbound, Account: "therapist", Sender: "therapist@practice.example",
		Decisions: []record.Decision{{Recipient: client, Address: client, Protection: record.Consented, Reason: "consent",
			Consent: &record.ConsentEvent{ID: 7, Client: "Chart 7", Signed: "2026-01-02", Evidence: "intake form"}}}}
	return m, body
}

func TestRecordVerifyExport(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	for i := 1; i <= 30; i++ {
		client := "anna@client.example"
		if i%3 == 0 {
			client = "bob@client.example"
		}
		m, body := testMessage(i, client)
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if err := a.RecordEvent(ctx, Event{MessageID: m.ID, Time: m.Time.Add(time.Second), Kind: Delivered, Recipients: []string{client}, Reply: "250 2.0.0 Ok"}); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			a.CloseSegment(ctx)
		}
	}
	a.RecordRefusal(ctx, RefusalRecord{Time: f.now, Account: "therapist", Recipient: "carl@client.example", Reason: "<carl@client.example>: no consent on file"})
	a.RecordConsent(ctx, record.ConsentEvent{ID: 7, Kind: "given", Client: "Chart 7", Addresses: []string{"anna@client.example"}, Signed: "2026-01-02", Evidence: "intake form", RecordedBy: "admin"})
	if a.LastConsentID() != 7 {
		t.Errorf("last consent id %d", a.LastConsentID())
	}
	seq, head := a.ChainHead()
	a.Close()

	// A stolen disk reveals no subject, body or address.
	segs, _ := filepath.Glob(filepath.Join(f.dir, "seg-*.log"))
	if len(segs) != 2 {
		t.Fatalf("%d segments, want 2", len(segs))
	}
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		for _, secret := range []string{"Session", "Confidential body", "anna@client.example", "carl", "intake form", "Chart 7"} {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds %q in clear", filepath.Base(s), secret)
			}
		}
	}

	var out bytes.Buffer
	rep, err := verify(f.dir, &out)
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	if rep.HeadSeq != seq || rep.Head != head || rep.Records != seq {
		t.Errorf("verify saw head %d %s over %d records; the archive said %d %s", rep.HeadSeq, rep.Head, rep.Records, seq, head)
	}

	exp := filepath.Join(t.TempDir(), "export")
	er, err := Export(ctx, f.dir, f.priv, exp, Filter{Clients: []string{"Anna <ANNA@client.example>"}})
	if err != nil {
		t.Fatal(err)
	}
	if er.Messages != 20 || er.Refusals != 0 || er.ConsentEvents != 1 || !er.RecordsChecked || er.Head != head {
		t.Errorf("export report %+v", er)
	}
	var m manifest
	mb, _ := os.ReadFile(filepath.Join(exp, "manifest.json"))
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	first := m.Messages[0]
	if first.Subject != "Session 1 notes" || first.MessageID != "msg0001@practice.example" || first.Recipients[0].Consent.Evidence != "intake form" ||
		len(first.Recipients[0].Delivery) != 1 || first.Recipients[0].Delivery[0].Reply != "250 2.0.0 Ok" {
		t.Errorf("first message in the manifest: %+v", first)
	}
	body, _ := os.ReadFile(filepath.Join(exp, first.File))
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != first.SHA256 || !strings.Contains(string(body), "Confidential body 1.") {
		t.Errorf("exported message %s does not match the manifest", first.File)
	}
	sums, _ := os.ReadFile(filepath.Join(exp, "SHA256SUMS"))
	if n := strings.Count(string(sums), "\n"); n != 20+6 {
		t.Errorf("SHA256SUMS lists %d files, want 26 (20 messages, manifest.json, index.html, index.css, index.js, seal.pub, seal-key.asc):\n%s", n, sums)
	}
	// The time filter.
	exp2 := filepath.Join(t.TempDir(), "export2")
	er, err = Export(ctx, f.dir, f.priv, exp2, Filter{Until: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)})
	if err != nil || er.Messages != 0 {
		t.Errorf("export before the first message: %+v %v", er, err)
	}
	if _, err := Export(ctx, f.dir, f.priv, exp, Filter{}); err == nil {
		t.Error("exported into a folder that is not empty")
	}
	if _, err := Export(ctx, f.dir, f.pub, filepath.Join(t.TempDir(), "x"), Filter{}); err == nil {
		t.Error("exported with only the public key")
	}
}

// archiveWithRecords makes a closed archive of three segments.
func archiveWithRecords(t *testing.T) *fixture {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	for i := 1; i <= 12; i++ {
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if i%4 == 0 && i < 12 {
			a.CloseSegment(ctx)
		}
	}
	a.Close()
	return f
}

// records lists the byte ranges of the records in a segment file.
func records(t *testing.T, path string) [][2]int64 {
	sr, f, err := openSegment(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]int64
	for {
		r, err := sr.next()
		if err != nil {
			break
		}
		out = append(out, [2]int64{r.offset, r.offset + r.size})
	}
	return out
}

// keepHead copies the head file of the archive in dir as it is now; the
// function it returns puts that copy back. A crash during a write leaves
// the head file so: it is written only after the write's fsync.
func keepHead(t testing.TB, dir string) func() {
	t.Helper()
	b, err := os.ReadFile(HeadFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.WriteFile(HeadFile(dir), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func copyDir(t *testing.T, src string) string {
	dst := filepath.Join(t.TempDir(), "archive")
	os.MkdirAll(dst, 0o700)
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(src, e.Name()))
		os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600)
	}
	return dst
}

func mustRead(dir, name string) []byte {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	return b
}

// TestCloseDuringWrites: Close while records and operations are being
// handed to the writer. Every call returns nil (and its record is in the
// chain) or errClosed; none panics, and calls after Close return errClosed.
func TestCloseDuringWrites(t *testing.T) {
	for _, tt := range []struct {
		name    string
		writers int
		ops     int // goroutines closing segments meanwhile
		// impatient callers give up at once when the writer is busy: they
		// try again and again, right up to Close
		impatient int
	}{
		{"records", 8, 0, 0},
		{"records and segment closes", 6, 2, 0},
		{"impatient records and segment closes", 2, 2, 8},
		{"one writer", 1, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for round := 0; round < 10; round++ {
				f := newFixture(t)
				a := f.open(t, 0)
				ctx := context.Background()
				gone, cancel := context.WithCancel(ctx)
				cancel()
				var written, seals atomic.Int64
				var started, done sync.WaitGroup
				loop := func(do func() error, count *atomic.Int64) {
					defer done.Done()
					first := true
					for {
						err := do()
						if first {
							first = false
							started.Done()
						}
						if errors.Is(err, errClosed) {
							return
						}
						if errors.Is(err, context.Canceled) {
							continue // not handed over: not written
						}
						if err != nil {
							t.Errorf("during Close: %v, want nil or errClosed", err)
							return
						}
						count.Add(1)
					}
				}
				for w := 0; w < tt.writers; w++ {
					started.Add(1)
					done.Add(1)
					go loop(func() error {
						return a.RecordEvent(ctx, Event{MessageID: "msg0001", Time: f.clock(), Kind: Deferred})
					}, &written)
				}
				for o := 0; o < tt.ops; o++ {
					started.Add(1)
					done.Add(1)
					go loop(func() error { return a.CloseSegment(ctx) }, &seals)
				}
				for i := 0; i < tt.impatient; i++ {
					started.Add(1)
					done.Add(1)
					if i%2 == 0 {
						go loop(func() error {
							return a.RecordEvent(gone, Event{MessageID: "msg0001", Time: f.clock(), Kind: Deferred})
						}, &written)
					} else {
						go loop(func() error { return a.CloseSegment(gone) }, &seals)
					}
				}
				started.Wait() // every goroutine is writing
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				done.Wait()
				if err := a.RecordEvent(ctx, Event{MessageID: "msg0001", Kind: Deferred}); !errors.Is(err, errClosed) {
					t.Errorf("a record after Close: %v, want errClosed", err)
				}
				if err := a.CloseSegment(ctx); !errors.Is(err, errClosed) {
					t.Errorf("an operation after Close: %v, want errClosed", err)
				}
				rep, err := verify(f.dir, nil)
				if err != nil {
					t.Fatal(err)
				}
				if want := uint64(1 + written.Load() + seals.Load()); rep.Records != want {
					t.Fatalf("%d records in the chain; %d were acknowledged (with init and seals)", rep.Records, want)
				}
			}
		})
	}
}
