package archive

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/record"
)

// mixedArchive is an archive that went through what years of use bring:
// several segments, messages to several clients over several days, their
// delivery events, refusals, consent events, a hold and its release, a
// prune, and a change of archive key.
type mixedArchive struct {
	*fixture
	keys openpgp.EntityList // every archive key's private half
}

func newMixedArchive(t *testing.T) *mixedArchive {
	t.Helper()
	f := newFixture(t)
	ctx := context.Background()
	a := f.open(t, 4<<10)
	all := []string{"anna@client.example", "bob@client.example", "chris@client.example"}
	clients := []string{"anna@client.example", "chris@client.example"} // Bob comes later
	write := func(a *Archive, from, to int) {
		for i := from; i < to; i++ {
			c := clients[i%len(clients)]
			m, body := testMessage(i, c)
			m.Time = f.clock()
			if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
				t.Fatal(err)
			}
			if err := a.RecordEvent(ctx, Event{MessageID: m.ID, Time: f.clock(), Kind: Delivered, Recipients: []string{c}}); err != nil {
				t.Fatal(err)
			}
			if i%5 == 0 {
				if err := a.RecordRefusal(ctx, RefusalRecord{Time: f.clock(), Account: "therapist", Recipient: "eve@elsewhere.example", Reason: "no consent", Ref: fmt.Sprintf("R%05d", i), Code: "no_consent"}); err != nil {
					t.Fatal(err)
				}
			}
			if i%7 == 0 {
				if err := a.RecordConsent(ctx, record.ConsentEvent{ID: int64(i), Kind: record.ConsentGiven, Client: "Chart " + c[:4], Addresses: []string{c}, Signed: "2026-01-02"}); err != nil {
					t.Fatal(err)
				}
			}
			f.advance(6 * time.Hour)
		}
	}
	write(a, 0, 10)
	clients = all
	write(a, 10, 20)
	a.CloseSegment(ctx)
	// A year later: the first year's segments go, but what a hold on
	// Bob keeps.
	f.advance(400 * 24 * time.Hour)
	hold, err := a.Hold(ctx, []string{"bob@client.example"}, "", "", "complaint")
	if err != nil {
		t.Fatal(err)
	}
	write(a, 20, 30)
	if rep, err := a.Prune(ctx, 365*24*time.Hour, false); err != nil || len(rep.Removed) == 0 || !strings.Contains(rep.Kept, "hold") {
		t.Fatalf("prune: %+v %v", rep, err)
	}
	if err := a.Release(ctx, hold); err != nil {
		t.Fatal(err)
	}
	a.Close()
	newPub, newPriv := newKeys(t, "Archive Two")
	a, err = Open(Options{Dir: f.dir, PublicKey: newPub, Now: f.clock, SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	write(a, 30, 40)
	a.Close()
	return &mixedArchive{fixture: f, keys: append(append(openpgp.EntityList{}, f.priv...), newPriv...)}
}

// scanQuery is what the index answers, found by reading every header of
// every segment instead.
func scanQuery(t *testing.T, dir string, q recordQuery) []uint64 {
	t.Helper()
	var out []uint64
	if err := walk(dir, func(l located) {
		if q.matches(&l.h) {
			out = append(out, l.h.Seq)
		}
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func indexQuery(t *testing.T, dir string, q recordQuery) []uint64 {
	t.Helper()
	found, err := findRecords(context.Background(), dir, q)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, l := range found {
		out = append(out, l.h.Seq)
	}
	return out
}

// exportManifest exports with filter and returns the manifest without
// the time of the export.
func exportManifest(t *testing.T, m *mixedArchive, f Filter) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "export")
	if _, err := Export(context.Background(), m.dir, m.keys, out, f); err != nil {
		t.Fatal(err)
	}
	var man manifest
	b, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil || json.Unmarshal(b, &man) != nil {
		t.Fatalf("manifest: %v", err)
	}
	man.ExportedAt = time.Time{}
	j, _ := json.Marshal(man)
	return string(j)
}

// TestIndexRebuiltMatchesScan: whatever became of the index (lost, behind,
// another archive's, damaged, pointing at the wrong records), what is found
// through it is what reading every segment finds, and exports are the same.
func TestIndexRebuiltMatchesScan(t *testing.T) {
	m := newMixedArchive(t)
	day := m.now.Add(-5 * 24 * time.Hour).Truncate(24 * time.Hour)
	bob := addrHash(mustRead(m.dir, "address-hash.key"), "bob@client.example")
	queries := map[string]recordQuery{
		"everything":           {},
		"messages":             {kinds: []string{kindMessage}},
		"Bob's messages":       {kinds: []string{kindMessage}, addrs: []string{bob}},
		"refusals of one day":  {kinds: []string{kindRefusal}, since: day, until: day.Add(24 * time.Hour)},
		"consent events":       {kinds: []string{kindConsent}},
		"holds and releases":   {kinds: []string{kindHold, kindRelease}},
		"one message's events": {kinds: []string{kindEvent}, ids: []string{"msg0033"}},
	}
	filters := map[string]Filter{
		"everything": {},
		"Bob":        {Clients: []string{"bob@client.example"}},
		"one day":    {Since: day, Until: day.Add(24 * time.Hour)},
	}
	want := map[string][]uint64{}
	for name, q := range queries {
		want[name] = scanQuery(t, m.dir, q)
		if len(want[name]) == 0 {
			t.Fatalf("fixture: %s finds nothing", name)
		}
	}
	wantExport := map[string]string{}
	for name, f := range filters {
		wantExport[name] = exportManifest(t, m, f)
	}
	if !strings.Contains(wantExport["everything"], "msg0039") || strings.Contains(wantExport["everything"], `"msg0001"`) {
		t.Fatal("fixture: the export should hold the newest messages and not the pruned ones")
	}
	path := IndexFile(m.dir)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no index beside the archive: %v", err)
	}
	other := newMixedArchive(t)
	if _, err := Reindex(context.Background(), other.dir); err != nil {
		t.Fatal(err)
	}
	otherIndex, _ := os.ReadFile(IndexFile(other.dir))

	for _, tt := range []struct {
		name   string
		damage func(t *testing.T)
	}{
		{"as the relay left it", func(t *testing.T) {}},
		{"lost", func(t *testing.T) { removeIndexFile(path) }},
		{"behind (an older copy)", func(t *testing.T) {
			sqlExec(t, path, `DELETE FROM records WHERE seq > 40`, `DELETE FROM addrs WHERE seq > 40`)
			sqlExec(t, path, `UPDATE meta SET v = (SELECT seq || ' ' || seg || ' ' || off || ' ' || end_off || ' ' || hash FROM records WHERE seq = 40) WHERE k = 'head'`)
		}},
		{"another archive's", func(t *testing.T) {
			removeIndexFile(path)
			os.WriteFile(path, otherIndex, 0o600)
		}},
		{"not a database", func(t *testing.T) {
			removeIndexFile(path)
			os.WriteFile(path, []byte(strings.Repeat("garbage ", 1000)), 0o600)
		}},
		{"damaged in the middle", func(t *testing.T) {
			b := append([]byte(nil), before...)
			for i := len(b) / 3; i < len(b)/2; i++ {
				b[i] ^= 0x5a
			}
			removeIndexFile(path)
			os.WriteFile(path, b, 0o600)
		}},
		{"rows pointing at the wrong records", func(t *testing.T) {
			sqlExec(t, path, `UPDATE records SET off = (SELECT r2.off FROM records r2 WHERE r2.seq = records.seq + 1 AND r2.seg = records.seg) WHERE kind = 'message' AND seq % 3 = 0 AND EXISTS (SELECT 1 FROM records r2 WHERE r2.seq = records.seq + 1 AND r2.seg = records.seg)`)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			removeIndexFile(path)
			if err := os.WriteFile(path, before, 0o600); err != nil {
				t.Fatal(err)
			}
			tt.damage(t)
			for name, q := range queries {
				if got := indexQuery(t, m.dir, q); !slices.Equal(got, want[name]) {
					t.Errorf("%s: the index finds %v, the segments %v", name, got, want[name])
				}
			}
			for name, f := range filters {
				if got := exportManifest(t, m, f); got != wantExport[name] {
					t.Errorf("export of %s differs from the export with the index intact", name)
				}
			}
			// The relay's start takes it up too.
			a, err := Open(Options{Dir: m.dir, PublicKey: m.pub, Now: m.clock})
			if err != nil {
				t.Fatal(err)
			}
			if id := a.LastConsentID(); id != 35 {
				t.Errorf("newest consent event copied: %d, want 35", id)
			}
			a.Close()
		})
	}
}

// TestVerifyingExportIgnoresTheIndex: an index edited to hide a record
// hides it from the quick export (the index says which records there
// are), but not from an export that verifies the whole archive: that one
// reads every header.
func TestVerifyingExportIgnoresTheIndex(t *testing.T) {
	m := newMixedArchive(t)
	sqlExec(t, IndexFile(m.dir), `DELETE FROM addrs WHERE seq IN (SELECT seq FROM records WHERE kind = 'message' AND id = 'msg0034')`)
	bob := Filter{Clients: []string{"bob@client.example"}}
	for _, verifyAll := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "export")
		rep, err := ExportWith(context.Background(), m.dir, m.keys, out, bob, ExportOptions{VerifyAll: verifyAll})
		if err != nil {
			t.Fatal(err)
		}
		_, err = os.Stat(filepath.Join(out, "messages", "msg0034.eml"))
		if got := err == nil; got != verifyAll || rep.Verified != verifyAll {
			t.Errorf("verify all %v: msg0034 exported %v, verified %v", verifyAll, got, rep.Verified)
		}
	}
}

// sqlExec changes an index file behind the archive's back.
func sqlExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestIndexBehindAfterCrash: records fsynced whose index rows were never
// written (the relay killed between the two) leave the index behind the
// archive, never ahead of it; the next start, and any reader, catch up.
func TestIndexBehindAfterCrash(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := f.open(t, 0)
	for i := range 5 {
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.IndexCaughtUp(ctx); err != nil {
		t.Fatal(err)
	}
	// The hook is set while no indexer runs: one still catching up from
	// the segments could read the records below after all.
	a.Close()
	indexWrite = func([]indexRow) bool { return false }
	defer func() { indexWrite = func([]indexRow) bool { return true } }()
	a = f.open(t, 0)
	for i := 5; i < 9; i++ {
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	seq, _ := a.ChainHead()
	a.Close()
	indexWrite = func([]indexRow) bool { return true }

	x, err := openIndex(IndexFile(f.dir))
	if err != nil {
		t.Fatal(err)
	}
	head, err := x.head(ctx)
	x.close()
	if err != nil || head.seq >= seq || head.seq == 0 {
		t.Fatalf("after the crash the index's head is %d (%v); the archive's is %d: it must be behind", head.seq, err, seq)
	}
	all := recordQuery{kinds: []string{kindMessage}}
	if got, want := indexQuery(t, f.dir, all), scanQuery(t, f.dir, all); len(got) != 9 || !slices.Equal(got, want) {
		t.Errorf("a reader after the crash finds %v; the segments hold %v", got, want)
	}
	a = f.open(t, 0)
	defer a.Close()
	if got := a.index; got == nil {
		t.Fatal("the start did not open the index")
	}
	h, _ := a.index.head(ctx)
	if h.seq != seq {
		t.Errorf("after the start the index reaches %d, the archive %d", h.seq, seq)
	}
}

// TestOpenStopsBuildingTheIndex: a relay told to stop while it builds the
// index of an archive that has none stops at once, leaves the archive as
// it was, and the next start builds the index whole.
func TestOpenStopsBuildingTheIndex(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	for i := range 20 {
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	seq, _ := a.ChainHead()
	a.Close()
	removeIndexFile(IndexFile(f.dir))
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	start := time.Now()
	if a, err := Open(Options{Dir: f.dir, PublicKey: f.pub, Now: f.clock, Context: stopped}); err == nil || !strings.Contains(err.Error(), "stopped") {
		if a != nil {
			a.Close()
		}
		t.Fatalf("Open with its context ended: %v; want it stopped", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Open took %s to stop", d)
	}
	a = f.open(t, 0)
	defer a.Close()
	if h, err := a.index.head(ctx); err != nil || h.seq != seq {
		t.Errorf("after the next start the index reaches %d (%v), the archive %d", h.seq, err, seq)
	}
}
