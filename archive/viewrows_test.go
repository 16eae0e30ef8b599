package archive

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestIDIndex: every message is found by its id, through the map and the
// merged arrays alike; an id recorded twice finds its newest message; an
// unknown id finds nothing; after a prune the rows left are renumbered and
// the pruned ones are not found.
func TestIDIndex(t *testing.T) {
	x := newIDIndex()
	n := 3*idRecent + 17
	for i := range n {
		x.add(fmt.Sprintf("msg%07d", i), uint32(i))
	}
	x.add("msg0000005", uint32(n)) // recorded again, later
	for _, tt := range []struct {
		id   string
		row  uint32
		ok   bool
		what string
	}{
		{"msg0000000", 0, true, "the first, merged"},
		{"msg0000006", 6, true, "merged"},
		{fmt.Sprintf("msg%07d", n-1), uint32(n - 1), true, "the newest, in the map"},
		{"msg0000005", uint32(n), true, "recorded twice: the newest"},
		{"nobody", 0, false, "unknown"},
	} {
		row, ok := x.find(tt.id)
		if ok != tt.ok || ok && row != tt.row {
			t.Errorf("%s (%s): row %d, %v; want %d, %v", tt.id, tt.what, row, ok, tt.row, tt.ok)
		}
	}
	for i := range n {
		if row, ok := x.find(fmt.Sprintf("msg%07d", i)); !ok || row != uint32(i) && i != 5 {
			t.Fatalf("msg%07d: row %d, %v", i, row, ok)
		}
	}
	// A prune took the first half out.
	moved := make([]int32, n+1)
	for i := range moved {
		moved[i] = int32(i - (n+1)/2)
		if i < (n+1)/2 {
			moved[i] = -1
		}
	}
	x.renumber(moved)
	if _, ok := x.find("msg0000006"); ok {
		t.Error("a pruned message is still found")
	}
	last := fmt.Sprintf("msg%07d", n-1)
	if row, ok := x.find(last); !ok || row != uint32(n-1-(n+1)/2) {
		t.Errorf("%s after the prune: row %d, %v; want %d", last, row, ok, n-1-(n+1)/2)
	}
}

// TestClientSets: each address is kept once, and messages with the same
// clients share one set.
func TestClientSets(t *testing.T) {
	c := newClientSets()
	a := c.set([]string{"anna@client.example"})
	b := c.set([]string{"anna@client.example", "bob@client.example"})
	if again := c.set([]string{"anna@client.example"}); again != a || a == b {
		t.Errorf("sets %d, %d, %d: want the first and third the same, the second another", a, b, again)
	}
	if none := c.set(nil); none != 0 || len(c.sets[0]) != 0 {
		t.Errorf("no clients: set %d %v", none, c.sets[none])
	}
	if len(c.names) != 2 || fmt.Sprint(c.sets[b]) != "[anna@client.example bob@client.example]" {
		t.Errorf("addresses %v, set %v", c.names, c.sets[b])
	}
	if &c.sets[a][0] == &c.sets[b][0] || c.sets[a][0] != c.sets[b][0] {
		t.Error("sets share their slices")
	}
}

// TestViewMemoryPerMessage: what the view keeps grows by a few dozen
// octets a message, not by hundreds (a million messages must fit in a
// small server's memory), and a message's details and events are still
// read back.
func TestViewMemoryPerMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("records 20,000 messages")
	}
	f := newFixture(t)
	a := f.open(t, 4<<20)
	ctx := context.Background()
	const n = 20000
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				m, body := testMessage(i, fmt.Sprintf("client%d@client.example", i%500))
				m.ID = fmt.Sprintf("msg%06d", i)
				if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
					t.Error(err)
				}
				if err := a.RecordEvent(ctx, Event{MessageID: m.ID, Time: f.clock(), Kind: Delivered, Recipients: []string{m.Decisions[0].Address}, Reply: "250 OK"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	a.Close()
	before := heapInUse()
	v, err := OpenView(f.dir, f.priv)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	grew := heapInUse() - before
	if v.Len() != n {
		t.Fatalf("the view holds %d messages, want %d", v.Len(), n)
	}
	// About 70 octets a message, and at this size as much again of fixed
	// parts (the rows' chunks, the id map); strings, slices and a map
	// entry per message would be 600.
	if per := grew / n; per > 250 {
		t.Errorf("the view keeps %d octets a message (%d MB for %d); want under 250", per, grew>>20, n)
	}
	m, _ := v.Message(v.Messages()[n-1].Seq)
	if d, err := v.Details(m); err != nil || len(d.Events) != 1 || d.Time.Before(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("the newest message's details: %+v %v", d, err)
	}
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestViewLooksAgainAfterChanges: once the archive's folder has settled,
// a look that finds nothing changed reads nothing; a record appended to
// the last segment, a new segment, and a prune are each still seen.
func TestViewLooksAgainAfterChanges(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	defer a.Close()
	ctx := context.Background()
	record := func(i int) {
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	record(1)
	v, err := OpenView(f.dir, f.priv)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	// As if the folder had last changed a minute ago.
	settle := func() {
		old := time.Now().Add(-time.Minute)
		if err := os.Chtimes(f.dir, old, old); err != nil {
			t.Fatal(err)
		}
		if err := v.Refresh(); err != nil {
			t.Fatal(err)
		}
		if !v.stamp.settled {
			t.Fatal("the folder's stamp is not taken as settled")
		}
	}
	for _, tt := range []struct {
		what           string
		before, change func()
		want           int
	}{
		{"a record in the last segment", func() {}, func() { record(2) }, 2},
		// The segment is sealed before the look: only the folder changes.
		{"a new segment", func() { a.CloseSegment(ctx) }, func() { record(3) }, 3},
		{"nothing", func() {}, func() {}, 3},
	} {
		tt.before()
		settle()
		tt.change()
		if err := v.Refresh(); err != nil {
			t.Fatal(err)
		}
		if n := v.Len(); n != tt.want {
			t.Errorf("after %s the view holds %d messages, want %d", tt.what, n, tt.want)
		}
	}
}
