package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
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
	a.RecordRefusal(ctx, Refusal{Time: f.now, Account: "therapist", Recipient: "carl@client.example", Reason: "<carl@client.example>: no consent on file"})
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
	rep, err := Verify(f.dir, &out)
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
	if er.Messages != 20 || er.Refusals != 0 || er.ConsentEvents != 1 || !er.Verified || er.Head != head {
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
	if n := strings.Count(string(sums), "\n"); n != 20+3 {
		t.Errorf("SHA256SUMS lists %d files, want 23 (20 messages, manifest.json, index.html, seal.pub):\n%s", n, sums)
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

// TestTamper: every way of changing the record is found, and the report
// names the place.
func TestTamper(t *testing.T) {
	f := archiveWithRecords(t)
	other := archiveWithRecords(t)
	seg2 := "seg-00000002.log"
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		want   string
	}{
		{"flip a byte in a payload", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			r := records(t, p)[1]
			b[r[1]-40] ^= 1
			os.WriteFile(p, b, 0o600)
		}, "seg-00000002.log: record 8 (at byte"},
		{"flip a byte in a header", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			r := records(t, p)[1]
			i := bytes.Index(b[r[0]:], []byte(`"kind":"message"`))
			b[r[0]+int64(i)+9] = 'M'
			os.WriteFile(p, b, 0o600)
		}, "seg-00000002.log: record 8 (at byte"},
		{"drop a record", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			r := records(t, p)[1]
			os.WriteFile(p, append(b[:r[0]:r[0]], b[r[1]:]...), 0o600)
		}, "seg-00000002.log: record 9 follows record 7"},
		{"swap two records", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			rs := records(t, p)
			a, c := b[rs[1][0]:rs[1][1]], b[rs[2][0]:rs[2][1]]
			var nb []byte
			nb = append(nb, b[:rs[1][0]]...)
			nb = append(nb, c...)
			nb = append(nb, a...)
			nb = append(nb, b[rs[2][1]:]...)
			os.WriteFile(p, nb, 0o600)
		}, "seg-00000002.log: record 9 follows record 7"},
		{"truncate a sealed segment", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-100], 0o600)
		}, "seg-00000002.log: truncated"},
		{"cut a sealed segment at a record boundary", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			rs := records(t, p)
			os.WriteFile(p, b[:rs[len(rs)-1][0]], 0o600)
		}, "seg-00000002.log: a closed segment without its seal"},
		{"replace a whole segment", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(other.dir, seg2))
			os.WriteFile(filepath.Join(dir, seg2), b, 0o600)
		}, "seg-00000002.log"},
		{"remove a segment", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, seg2))
		}, "segment seg-00000002.log is missing"},
		{"remove the first segment", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "seg-00000001.log"))
		}, "no prune record accounts for them"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, f.dir)
			if _, err := Verify(dir, nil); err != nil {
				t.Fatalf("the untouched copy does not verify: %v", err)
			}
			tt.mutate(t, dir)
			var out bytes.Buffer
			_, err := Verify(dir, &out)
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("verify passed after the change:\n%s", out.String())
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("the report does not name %q:\n%s", tt.want, out.String())
			}
		})
	}
}

// TestTornTail: a crash in the middle of a record leaves a torn tail; the
// next start sets it aside and records that, and nothing complete is lost.
func TestTornTail(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		m, body := testMessage(i, "anna@client.example")
		a.RecordMessage(ctx, m, strings.NewReader(body))
	}
	a.Close()
	seg := filepath.Join(f.dir, "seg-00000001.log")
	b, _ := os.ReadFile(seg)
	last := records(t, seg)[5]
	torn := b[last[0] : last[0]+(last[1]-last[0])/2]
	fh, _ := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	fh.Write(torn)
	fh.Close()

	a = f.open(t, 0)
	m, body := testMessage(6, "anna@client.example")
	if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	aside, _ := filepath.Glob(filepath.Join(f.dir, "torn", "*.bin"))
	if len(aside) != 1 {
		t.Fatalf("%d files set aside", len(aside))
	}
	if got, _ := os.ReadFile(aside[0]); !bytes.Equal(got, torn) {
		t.Error("the set-aside bytes are not the torn tail")
	}
	if _, err := Verify(f.dir, nil); err != nil {
		t.Fatalf("verify after recovery: %v", err)
	}
	var kinds []string
	walk(f.dir, func(l located) { kinds = append(kinds, l.h.Kind) })
	if strings.Join(kinds, ",") != "init,message,message,message,message,message,torn,message" {
		t.Errorf("chain %v", kinds)
	}
}

// TestGroupCommit: many writers at once; each returns only once its record
// is durable, and the chain stays whole.
func TestGroupCommit(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 1<<20)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				m, body := testMessage(w*100+i, "anna@client.example")
				if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	a.Close()
	rep, err := Verify(f.dir, nil)
	if err != nil || rep.Records != 501 {
		t.Fatalf("verify: %d records, %v", rep.Records, err)
	}
}

func TestPruneAndHold(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	// Three years of segments, one per year; the second year has Bob.
	for year := 0; year < 3; year++ {
		client := "anna@client.example"
		if year == 1 {
			client = "bob@client.example"
		}
		m, body := testMessage(year, client)
		a.RecordMessage(ctx, m, strings.NewReader(body))
		a.CloseSegment(ctx)
		f.advance(365 * 24 * time.Hour)
	}
	id, err := a.Hold(ctx, []string{"bob@client.example"}, "", "", "subpoena")
	if err != nil {
		t.Fatal(err)
	}
	retention := 2*365*24*time.Hour - 24*time.Hour
	rep, err := a.Prune(ctx, retention, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rep.Removed, ",") != "seg-00000001.log" || !strings.Contains(rep.Kept, "under hold "+id) {
		t.Fatalf("prune removed %v, kept %q", rep.Removed, rep.Kept)
	}
	if _, err := Verify(f.dir, nil); err != nil {
		t.Fatalf("verify after a prune: %v", err)
	}
	if err := a.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	rep, err = a.Prune(ctx, retention, false)
	if err != nil || strings.Join(rep.Removed, ",") != "seg-00000002.log" {
		t.Fatalf("after release: removed %v, %v", rep.Removed, err)
	}
	a.Close()
	var out bytes.Buffer
	if _, err := Verify(f.dir, &out); err != nil {
		t.Fatalf("verify after two prunes: %v\n%s", err, out.String())
	}
	if a2 := f.open(t, 0); a2 != nil {
		a2.Close()
	}
}

// TestWriteFailureLeavesNothing: a failed write (here: the segment made
// read-only under the writer) returns an error and the next write chains on.
func TestWriteFailureLeavesNothing(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	m, body := testMessage(1, "anna@client.example")
	a.RecordMessage(ctx, m, strings.NewReader(body))
	good := a.seg
	bad, _ := os.Open(filepath.Join(f.dir, a.segName)) // read-only: writes fail
	a.seg = bad
	m, body = testMessage(2, "anna@client.example")
	if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err == nil {
		t.Fatal("a failed write returned no error")
	}
	a.seg = good
	bad.Close()
	m, body = testMessage(3, "anna@client.example")
	if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if rep, err := Verify(f.dir, nil); err != nil || rep.Records != 3 {
		t.Fatalf("verify: %v records, %v", rep.Records, err)
	}
}

func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	a := fx.open(f, 0)
	m, body := testMessage(1, "anna@client.example")
	a.RecordMessage(context.Background(), m, strings.NewReader(body))
	a.Close()
	seg, _ := os.ReadFile(filepath.Join(fx.dir, "seg-00000001.log"))
	f.Add(seg)
	f.Add(seg[:len(seg)/2])
	f.Add([]byte("SPR1\x00\x00\x00\x02{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "seal.pub"), mustRead(fx.dir, "seal.pub"), 0o600)
		os.WriteFile(filepath.Join(dir, "seg-00000001.log"), data, 0o600)
		Verify(dir, io.Discard)
		walk(dir, func(located) {})
	})
}

func mustRead(dir, name string) []byte {
	b, _ := os.ReadFile(filepath.Join(dir, name))
	return b
}

// TestLargeMessageStreams: a 40 MB message goes into the archive and out
// into an export without being held in memory (nor its ciphertext).
func TestLargeMessageStreams(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	m, head := testMessage(1, "anna@client.example")
	const size = 40 << 20
	var err error
	if grew := heapGrowth(func() {
		err = a.RecordMessage(context.Background(), m, io.MultiReader(strings.NewReader(head), io.LimitReader(zeros{}, size)))
	}); err != nil {
		t.Fatal(err)
	} else if grew > 24<<20 {
		t.Fatalf("heap grew by %d MB while archiving 40 MB", grew>>20)
	}
	a.Close()

	out := filepath.Join(t.TempDir(), "export")
	var rep *ExportReport
	if grew := heapGrowth(func() { rep, err = Export(context.Background(), f.dir, f.priv, out, Filter{}) }); err != nil {
		t.Fatal(err)
	} else if grew > 24<<20 {
		t.Fatalf("heap grew by %d MB while exporting 40 MB", grew>>20)
	}
	if rep.Messages != 1 {
		t.Fatalf("exported %d messages", rep.Messages)
	}
	fi, err := os.Stat(filepath.Join(out, "messages", m.ID+".eml"))
	if err != nil || fi.Size() != int64(len(head))+size {
		t.Fatalf("exported message: %v, %v; want %d octets", fi, err, len(head)+size)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(out, "messages", ".*")); len(leftovers) > 0 {
		t.Errorf("temporary files left in the export: %v", leftovers)
	}
}

// heapGrowth runs f and returns how far the heap in use rose above where it
// was before, sampled every few milliseconds.
func heapGrowth(f func()) int64 {
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	f()
	close(stop)
	<-done
	return int64(peak.Load()) - int64(base.HeapInuse)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

// TestRecordSizes: messages whose size the archive knows (a spool section)
// are recorded in memory up to 2 MiB and through a file beyond, and read
// back whole either way, as are those of unknown size.
func TestRecordSizes(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	want := map[string]string{}
	for i, size := range []int{10, 1900 << 10, 3 << 20, 2<<20 - 100} {
		m, head := testMessage(i+1, "anna@client.example")
		body := head + strings.Repeat("line of a large message\r\n", size/25)
		var r io.Reader = strings.NewReader(body) // has Size
		if i == 3 {
			r = io.MultiReader(r) // hides it
		}
		if err := a.RecordMessage(ctx, m, r); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(body))
		want[m.ID+"@practice.example"] = hex.EncodeToString(sum[:])
	}
	a.Close()
	exp := filepath.Join(t.TempDir(), "export")
	if _, err := Export(ctx, f.dir, f.priv, exp, Filter{}); err != nil {
		t.Fatal(err)
	}
	var man manifest
	mb, _ := os.ReadFile(filepath.Join(exp, "manifest.json"))
	if err := json.Unmarshal(mb, &man); err != nil {
		t.Fatal(err)
	}
	if len(man.Messages) != len(want) {
		t.Fatalf("%d messages exported, want %d", len(man.Messages), len(want))
	}
	for _, m := range man.Messages {
		b, _ := os.ReadFile(filepath.Join(exp, m.File))
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != m.SHA256 || got != want[m.MessageID] {
			t.Errorf("%s: exported %d octets that do not match what was recorded", m.MessageID, len(b))
		}
	}
}

// TestMessagesRecorded: after a crash the relay asks which of the messages
// it spooled have their record; every segment counts, a record torn off by
// the crash does not, and neither do events about a message.
func TestMessagesRecorded(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 2048) // a few records per segment
	ctx := context.Background()
	for i := 1; i <= 12; i++ {
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.RecordEvent(ctx, Event{MessageID: "msg0099", Time: f.clock(), Kind: Aborted}); err != nil {
		t.Fatal(err)
	}
	crashed := keepHead(t, f.dir)
	m, body := testMessage(13, "anna@client.example")
	if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	crashed()
	segs, _ := listSegments(f.dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments; the test wants several", len(segs))
	}
	// The last record is cut in half, as by a crash during its write.
	last := filepath.Join(f.dir, segs[len(segs)-1])
	recs := records(t, last)
	tail := recs[len(recs)-1]
	if err := os.Truncate(last, tail[0]+(tail[1]-tail[0])/2); err != nil {
		t.Fatal(err)
	}

	a = f.open(t, 2048)
	defer a.Close()
	got, err := a.MessagesRecorded(ctx, []string{"msg0001", "msg0007", "msg0012", "msg0013", "msg0099", "msg0100"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"msg0001": true, "msg0007": true, "msg0012": true}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("recorded %v, want %v", got, want)
	}
}

// TestExportOfDamagedRecords: a damaged message record is named as such,
// and neither export nor view shows a body or metadata that is not the
// record's own, even when the payload decrypts (moved from another record,
// its hash moved along).
func TestExportOfDamagedRecords(t *testing.T) {
	f := archiveWithRecords(t)
	locate := func(t *testing.T, dir string) []located {
		var msgs []located
		if err := walk(dir, func(l located) {
			if l.h.Kind == kindMessage {
				msgs = append(msgs, l)
			}
		}); err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string) (damagedID string)
		want   string
	}{
		{"a byte flipped in a payload", func(t *testing.T, dir string) string {
			l := locate(t, dir)[5]
			p := filepath.Join(dir, l.seg)
			b, _ := os.ReadFile(p)
			b[l.payOff+l.payLen/2] ^= 1
			os.WriteFile(p, b, 0o600)
			return l.h.ID
		}, "the payload does not match its header"},
		{"payloads (and their hashes) swapped between two records", func(t *testing.T, dir string) string {
			ls := locate(t, dir)
			a, c := ls[5], ls[6]
			if a.seg != c.seg || a.payLen != c.payLen {
				t.Fatalf("fixture: records %s and %s are not alike", a.h.ID, c.h.ID)
			}
			p := filepath.Join(dir, a.seg)
			b, _ := os.ReadFile(p)
			pa := append([]byte(nil), b[a.payOff:a.payOff+a.payLen]...)
			copy(b[a.payOff:], b[c.payOff:c.payOff+c.payLen])
			copy(b[c.payOff:], pa)
			b = bytes.Replace(b, []byte(a.h.PSHA), []byte("x"+c.h.PSHA[1:]), 1)
			b = bytes.Replace(b, []byte(c.h.PSHA), []byte(a.h.PSHA), 1)
			b = bytes.Replace(b, []byte("x"+c.h.PSHA[1:]), []byte(c.h.PSHA), 1)
			os.WriteFile(p, b, 0o600)
			return a.h.ID
		}, "its metadata names message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, f.dir)
			damaged := tt.mutate(t, dir)
			out := filepath.Join(t.TempDir(), "export")
			_, err := Export(context.Background(), dir, f.priv, out, Filter{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("export: %v; want an error saying %q", err, tt.want)
			}
			files, _ := filepath.Glob(filepath.Join(out, "messages", "*"))
			hidden, _ := filepath.Glob(filepath.Join(out, "messages", ".*"))
			for _, p := range append(files, hidden...) {
				if strings.Contains(p, damaged) || strings.HasPrefix(filepath.Base(p), ".") {
					t.Errorf("export left %s", filepath.Base(p))
				}
			}
			v, err := OpenView(dir, f.priv)
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			for _, m := range v.Messages() {
				if m.ID == damaged {
					t.Errorf("the view shows the damaged record %s", damaged)
				}
			}
			if len(v.Unreadable()) == 0 {
				t.Error("the view names no unreadable record")
			}
		})
	}
}
