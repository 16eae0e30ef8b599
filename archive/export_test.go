package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

// TestExportOnlyVerified: records the relay writes while an export runs
// (after its verification, before its reading) are left out and counted:
// the manifest's chain head and "verified" cover exactly what it holds.
func TestExportOnlyVerified(t *testing.T) {
	for _, tt := range []struct {
		name      string
		filter    Filter
		verifyAll bool
		want      int // messages exported
	}{
		{"everything", Filter{}, false, 3},
		{"one client", Filter{Clients: []string{"anna@client.example"}}, false, 3},
		{"everything, the whole archive verified", Filter{}, true, 3},
		{"one client, the whole archive verified", Filter{Clients: []string{"anna@client.example"}}, true, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			a := f.open(t, 0)
			defer a.Close()
			ctx := context.Background()
			for i := 1; i <= 3; i++ {
				m, body := testMessage(i, "anna@client.example")
				if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
					t.Fatal(err)
				}
			}
			seq, head := a.ChainHead()
			exportVerified = func() {
				m, body := testMessage(4, "anna@client.example")
				if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
					t.Error(err)
				}
				if err := a.RecordEvent(ctx, Event{MessageID: "msg0001", Time: f.clock(), Kind: Delivered, Recipients: []string{"anna@client.example"}}); err != nil {
					t.Error(err)
				}
			}
			defer func() { exportVerified = func() {} }()
			out := filepath.Join(t.TempDir(), "export")
			rep, err := ExportWith(ctx, f.dir, f.priv, out, tt.filter, ExportOptions{VerifyAll: tt.verifyAll})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Messages != tt.want || rep.HeadSeq != seq || rep.Head != head || rep.Verified != tt.verifyAll || !rep.RecordsChecked || rep.RecordsAfterHead != 2 {
				t.Errorf("report %+v; want %d messages under head %d, 2 records after it", rep, tt.want, seq)
			}
			var m manifest
			mb, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
			if err := json.Unmarshal(mb, &m); err != nil {
				t.Fatal(err)
			}
			if m.Archive.ChainHeadSeq != seq || m.Archive.RecordsAfterHead != 2 {
				t.Errorf("manifest archive %+v", m.Archive)
			}
			for _, mm := range m.Messages {
				if mm.ID == "msg0004" {
					t.Error("the manifest lists a message written after the verified chain head")
				}
				for _, r := range mm.Recipients {
					if len(r.Delivery) > 0 {
						t.Errorf("%s: a delivery recorded after the verified chain head", mm.ID)
					}
				}
			}
			if _, err := os.Stat(filepath.Join(out, "messages", "msg0004.eml")); err == nil {
				t.Error("the export holds a message written after the verified chain head")
			}
		})
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
		}, "the record's hash does not match its header"},
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

// BenchmarkExport: exporting small messages (goal: 100,000 in under a
// minute; SEALPOST_BENCH_EXPORT sets how many).
func BenchmarkExport(b *testing.B) {
	n, kb := 10000, 0
	if v := os.Getenv("SEALPOST_BENCH_EXPORT"); v != "" {
		fmt.Sscanf(v, "%d", &n)
	}
	if v := os.Getenv("SEALPOST_BENCH_EXPORT_KB"); v != "" { // each message padded to this size
		fmt.Sscanf(v, "%d", &kb)
	}
	f := newFixture(b)
	a := f.open(b, 0)
	var wg sync.WaitGroup
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 20 {
				m, body := testMessage(i, "anna@client.example")
				m.ID = fmt.Sprintf("m%07d", i)
				if pad := kb<<10 - len(body); pad > 0 {
					body += strings.Repeat("Confidential line of the attachment, seventy-two octets long, padded...\r\n", pad/74+1)
				}
				a.RecordMessage(context.Background(), m, strings.NewReader(body))
			}
		}(w)
	}
	wg.Wait()
	a.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out := filepath.Join(b.TempDir(), "export")
		rep, err := Export(context.Background(), f.dir, f.priv, out, Filter{})
		if err != nil || rep.Messages != n {
			b.Fatalf("%v %+v", err, rep)
		}
	}
	b.ReportMetric(float64(n), "messages")
	b.ReportMetric(float64(n)*float64(max(kb, 1))/1024/(b.Elapsed().Seconds()/float64(b.N)), "MB/s")
}

// lateDecisions is a body whose decisions are complete at its end, as the
// relay's is once the sealed copies are made.
type lateDecisions struct {
	*strings.Reader
	final []record.Decision
}

func (l lateDecisions) DecisionsAtEnd() []record.Decision { return l.final }

// TestExportSealed: a sealed recipient's record holds the SHA-256 of the
// PDF that was sent, given at the body's end; the export shows the
// protection, the hash and the passphrase event it rested on.
func TestExportSealed(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	defer a.Close()
	ctx := context.Background()
	m, body := testMessage(1, "anna@client.example")
	set := &record.ConsentEvent{ID: 42, Kind: record.PassphraseSet, Client: "Chart 7", Addresses: []string{"anna@client.example"},
		RecordedBy: "admin", RecordedAt: f.clock().Add(-time.Hour)}
	m.Decisions = []record.Decision{{Recipient: "anna@client.example", Address: "anna@client.example", Protection: record.Sealed,
		Reason: "sealed PDF", Consent: set}}
	final := append([]record.Decision(nil), m.Decisions...)
	final[0].SealedPDFSHA256, final[0].SealedPDFSize = strings.Repeat("ab", 32), 12345
	if err := a.RecordMessage(ctx, m, lateDecisions{strings.NewReader(body), final}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "export")
	recipients := exportedRecipients(t, f, out)
	if len(recipients) != 1 {
		t.Fatalf("manifest: %d messages", len(recipients))
	}
	r := recipients[0][0]
	consent, _ := r["consent"].(map[string]any)
	if r["protection"] != "sealed" || r["sealed_pdf_sha256"] != strings.Repeat("ab", 32) || r["sealed_pdf_size"] != 12345.0 ||
		consent["id"] != 42.0 || consent["kind"] != "passphrase-set" || consent["recorded"] == nil {
		t.Fatalf("recipient %v", r)
	}
	index, _ := os.ReadFile(filepath.Join(out, "index.html"))
	for _, w := range []string{">sealed</span>", "PDF sent: 12345 octets, SHA-256 " + strings.Repeat("ab", 32), "passphrase set " + set.RecordedAt.UTC().Format("2006-01-02 15:04:05") + " UTC (event 42)"} {
		if !bytes.Contains(index, []byte(w)) {
			t.Errorf("index.html lacks %q", w)
		}
	}
}

// TestExportComparesTheHeadFile: an export that does not verify the whole
// archive still finds records cut off its end, against the head file, and
// says so; on the whole archive it finds nothing wrong.
func TestExportComparesTheHeadFile(t *testing.T) {
	c := newCutArchive(t)
	for _, tt := range []struct {
		name string
		cut  func(dir string)
		want string
	}{
		{"whole", func(string) {}, ""},
		{"the last two records cut off", func(dir string) { cutRecords(t, dir, seg(5), 2) }, "2 records are missing from the end"},
		{"the newest segment removed", func(dir string) { os.Remove(filepath.Join(dir, seg(5))) }, "records are missing from the end"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyArchive(t, c.dir)
			tt.cut(dir)
			out := filepath.Join(t.TempDir(), "export")
			rep, err := Export(context.Background(), dir, c.priv, out, Filter{})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
			var m manifest
			json.Unmarshal(b, &m)
			got := strings.Join(m.Archive.Problems, "; ")
			if rep.RecordsChecked != (tt.want == "") || tt.want != "" && !strings.Contains(got, tt.want) || tt.want == "" && got != "" {
				t.Errorf("records checked %v, problems %q; want %q", rep.RecordsChecked, got, tt.want)
			}
		})
	}
}

// exportedRecipients exports the whole archive into out and gives each
// message's recipients as the manifest lists them.
func exportedRecipients(t *testing.T, f *fixture, out string) [][]map[string]any {
	t.Helper()
	if _, err := ExportWith(context.Background(), f.dir, f.priv, out, Filter{}, ExportOptions{Location: time.UTC}); err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Messages []struct {
			Recipients []map[string]any `json:"recipients"`
		} `json:"messages"`
	}
	mb, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mb, &raw); err != nil {
		t.Fatalf("manifest: %v\n%s", err, mb)
	}
	var recipients [][]map[string]any
	for _, m := range raw.Messages {
		recipients = append(recipients, m.Recipients)
	}
	return recipients
}

// TestExportSaysWhatWasHeld: a copy held for the sender's office hours
// names the opening it waited for, one sent at once despite them says why.
func TestExportSaysWhatWasHeld(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	defer a.Close()
	ctx := context.Background()
	opens := time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)
	m, body := testMessage(1, "anna@client.example, ben@client.example")
	m.Decisions = []record.Decision{
		{Recipient: "anna@client.example", Address: "anna@client.example", Protection: record.Encrypted, Reason: "key", HeldUntil: opens},
		{Recipient: "ben@client.example", Address: "ben@client.example", Protection: record.Encrypted, Reason: "key", SentNow: record.SentNowMarker},
	}
	if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	recipients := exportedRecipients(t, f, filepath.Join(t.TempDir(), "export"))
	if len(recipients) != 1 || len(recipients[0]) != 2 {
		t.Fatalf("manifest: recipients %v", recipients)
	}
	held, now := recipients[0][0], recipients[0][1]
	if held["held_until"] != "2026-12-07T14:00:00Z" || held["sent_now"] != nil {
		t.Errorf("the held recipient: %v", held)
	}
	if now["sent_now"] != "marker" || now["held_until"] != nil {
		t.Errorf("the recipient sent at once: %v", now)
	}
}
