package archive

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// TestSealedWithinADay: a segment is sealed once its first record is a day
// old, however little it holds, so no record waits longer than that for a
// seal; after a start, the day counts from the start.
func TestSealedWithinADay(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	ctx := context.Background()
	recordMessage := func(i int) {
		t.Helper()
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	sealed := func() int {
		t.Helper()
		segs, _ := listSegments(f.dir)
		return len(segs) - 1
	}
	recordMessage(1)
	f.advance(23 * time.Hour)
	recordMessage(2)
	if n := sealed(); n != 0 {
		t.Fatalf("%d segments sealed before a day", n)
	}
	f.advance(2 * time.Hour)
	recordMessage(3)
	// The writer seals right after answering that record.
	testutil.WaitFor(t, "the segment sealed a day after its first record", func() bool { return sealed() == 1 })
	a.Close()
	a = f.open(t, 0)
	recordMessage(4)
	f.advance(25 * time.Hour)
	recordMessage(5)
	a.Close()
	if n := sealed(); n != 2 {
		t.Fatalf("%d segments sealed, want 2 (a day after the restart)", n)
	}
	if _, err := verify(f.dir, nil); err != nil {
		t.Fatal(err)
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
	rep, err := verify(f.dir, nil)
	if err != nil || rep.Records != 501 {
		t.Fatalf("verify: %d records, %v", rep.Records, err)
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
	if rep, err := verify(f.dir, nil); err != nil || rep.Records != 3 {
		t.Fatalf("verify: %v records, %v", rep.Records, err)
	}
}
