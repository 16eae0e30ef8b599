package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/record"
)

func newKeys(t *testing.T, name string) (pub, priv openpgp.EntityList) {
	t.Helper()
	privArm, pubArm, err := NewKeyPair(name, strings.ToLower(strings.ReplaceAll(name, " ", ""))+"@practice.example")
	if err != nil {
		t.Fatal(err)
	}
	if priv, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(privArm)); err != nil {
		t.Fatal(err)
	}
	if pub, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(pubArm)); err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// TestViewAcrossKeyChange: after the archive key is changed, a view opened
// with either key shows the messages that key opens, names the others as
// unreadable instead of failing, and picks up new records; a key that
// opens nothing is refused with a clear error.
func TestViewAcrossKeyChange(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	recordMessage := func(a *Archive, i int) {
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	a := f.open(t, 0)
	recordMessage(a, 1)
	recordMessage(a, 2)
	a.Close()

	pub2, priv2 := newKeys(t, "Archive Two")
	a, err := Open(Options{Dir: f.dir, PublicKey: pub2, Now: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	recordMessage(a, 3)

	ids := func(v *View) (out []string) {
		for _, m := range v.Messages() {
			d, err := v.Details(m)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, d.ID)
		}
		return out
	}
	for _, tt := range []struct {
		name       string
		key        openpgp.EntityList
		ids        string
		unreadable int
	}{
		{"first key", f.priv, "msg0001 msg0002", 1},
		{"second key", priv2, "msg0003", 2},
	} {
		v, err := OpenView(f.dir, tt.key)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := strings.Join(ids(v), " "); got != tt.ids || len(v.Unreadable()) != tt.unreadable {
			t.Errorf("%s: messages %q, unreadable %v; want %q and %d", tt.name, got, v.Unreadable(), tt.ids, tt.unreadable)
		}
		if tt.name == "second key" {
			recordMessage(a, 4)
			if err := v.Refresh(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(ids(v), " "); got != "msg0003 msg0004" {
				t.Errorf("after a new record: %q", got)
			}
		}
		v.Close()
	}
	a.Close()

	_, other := newKeys(t, "Not The Archive")
	if _, err := OpenView(f.dir, other); err == nil || !strings.Contains(err.Error(), "opens none of the archive's 4 messages") {
		t.Errorf("a key that opens nothing: %v", err)
	}
}

// TestViewMetadataFromTail: the view reads a message's metadata and size
// without keeping its body, also when the body ends mid-write or the
// metadata is longer than the part of the plaintext kept (many recipients).
func TestViewMetadataFromTail(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	tests := []struct {
		name       string
		body       string
		recipients int
	}{
		{"small", "From: a\r\n\r\nhi\r\n", 1},
		{"body longer than the kept tail", "From: a\r\n\r\n" + strings.Repeat("x", 700<<10), 1},
		{"metadata longer than the kept tail", "From: a\r\n\r\nhi\r\n", 3000},
		{"both", "From: a\r\n\r\n" + strings.Repeat("y", 300<<10), 3000},
	}
	for i, tt := range tests {
		m, _ := testMessage(i, "anna@client.example")
		for r := 1; r < tt.recipients; r++ {
			d := m.Decisions[0]
			d.Recipient = fmt.Sprintf("c%d@client.example", r)
			d.Address, d.Reason = d.Recipient, strings.Repeat("a long reason ", 10)
			m.Decisions = append(m.Decisions, d)
		}
		if err := a.RecordMessage(context.Background(), m, strings.NewReader(tt.body)); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	v, err := OpenView(f.dir, f.priv)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	msgs := v.Messages()
	if len(msgs) != len(tests) {
		t.Fatalf("view shows %d messages, want %d", len(msgs), len(tests))
	}
	for i, tt := range tests {
		m := msgs[i]
		if m.Size != int64(len(tt.body)) || len(m.Clients) != tt.recipients {
			t.Errorf("%s: size %d with %d clients, want %d with %d", tt.name, m.Size, len(m.Clients), len(tt.body), tt.recipients)
		}
		if body, err := v.Body(m); err != nil || string(body) != tt.body {
			t.Errorf("%s: body %d octets, %v", tt.name, len(body), err)
		}
	}
}

func TestTailKeeper(t *testing.T) {
	var all []byte
	tk := &tailKeeper{keep: 100}
	for i, n := range []int{1, 7, 99, 100, 101, 3, 250, 0, 40, 60, 61, 1, 199} {
		p := bytes.Repeat([]byte{byte('a' + i)}, n)
		for j := range p {
			p[j] += byte(j % 3)
		}
		all = append(all, p...)
		tk.Write(p)
		if len(tk.b) < min(len(all), 100) || !bytes.HasSuffix(all, tk.b) {
			t.Fatalf("after %d writes: kept %d octets, not the last ones", i+1, len(tk.b))
		}
	}
}

// TestInOrder: results reach use in index order whatever order the work
// finishes in; the first error from use ends it, with no work left running.
var spinSink atomic.Int64

func TestInOrder(t *testing.T) {
	var running atomic.Int32
	work := func(i int) int {
		running.Add(1)
		defer running.Add(-1)
		spin := 0
		for k := range ((i * 7) % 5) * 100000 { // uneven work: finishes out of order
			spin ^= k
		}
		spinSink.Add(int64(spin)) // kept, so the loop is not optimised away
		return i * i
	}
	var got []int
	if err := inOrder(context.Background(), 50, work, func(i, r int) error {
		if r != i*i {
			t.Errorf("result %d for %d", r, i)
		}
		got = append(got, i)
		return nil
	}); err != nil || len(got) != 50 || !sort.IntsAreSorted(got) {
		t.Fatalf("got %v, %v", got, err)
	}
	stopAt := errors.New("stop")
	n := 0
	err := inOrder(context.Background(), 1000, work, func(i, r int) error {
		n++
		if i == 10 {
			return stopAt
		}
		return nil
	})
	if err != stopAt || n != 11 {
		t.Fatalf("use called %d times, err %v; want 11 and the error", n, err)
	}
	if r := running.Load(); r != 0 {
		t.Errorf("%d workers still running after inOrder returned", r)
	}
	if err := inOrder(context.Background(), 0, work, func(int, int) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// TestViewAfterPrune: a view opened before a prune serves nothing from
// the pruned segments: their messages leave it at the next refresh, and
// asking for one's body in between fails; the messages left keep their
// events, and a reader of the view's changes is told to start again.
func TestViewAfterPrune(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	defer a.Close()
	ctx := context.Background()
	for year := 0; year < 3; year++ {
		m, body := testMessage(year, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		a.CloseSegment(ctx)
		f.advance(365 * 24 * time.Hour)
	}
	for _, id := range []string{"msg0000", "msg0001"} {
		if err := a.RecordEvent(ctx, Event{MessageID: id, Time: f.clock(), Kind: Delivered, Reply: "250 late"}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := OpenView(f.dir, f.priv)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	before := v.Messages()
	if _, err := v.Body(before[0]); err != nil {
		t.Fatal(err)
	}
	nothing := func(ViewListing) {}
	cursor, _ := v.Changes(ViewCursor{}, nothing, nothing, func(*ViewRefusal) {})
	if rep, err := a.Prune(ctx, 30*30*24*time.Hour, false); err != nil || len(rep.Removed) != 1 {
		t.Fatalf("prune: %+v %v", rep, err)
	}
	if b, err := v.Body(before[0]); err == nil {
		t.Fatalf("the pruned message is still served (%d octets)", len(b))
	}
	if err := v.Refresh(); err != nil {
		t.Fatal(err)
	}
	after := v.Messages()
	for _, m := range after {
		if m.Seq == before[0].Seq {
			t.Fatal("the pruned message is still in the view")
		}
	}
	if len(after) != len(before)-1 {
		t.Fatalf("%d messages after the prune, want %d", len(after), len(before)-1)
	}
	if d, err := v.Details(after[0]); err != nil || d.ID != "msg0001" || len(d.Events) != 1 || d.Events[0].Reply != "250 late" {
		t.Errorf("the message left after the prune: %+v %v; want msg0001 with its delivery", d, err)
	}
	if d, err := v.Details(after[1]); err != nil || d.ID != "msg0002" || len(d.Events) != 0 {
		t.Errorf("the newest message: %+v %v; want msg0002 without events", d, err)
	}
	if _, ok := v.Changes(cursor, nothing, nothing, func(*ViewRefusal) {}); ok {
		t.Error("the view's changes since before the prune went on as if nothing left")
	}
}

// TestViewClientsOf: an outbound message is in the folder of every client
// who got it, however it was protected; colleagues are not clients.
func TestViewClientsOf(t *testing.T) {
	m := &messageMeta{Message: Message{Direction: Outbound, Decisions: []record.Decision{
		{Address: "colleague@practice.example", Protection: record.Internal},
		{Address: "key@client.example", Protection: record.Encrypted},
		{Address: "sealed@client.example", Protection: record.Sealed},
		{Address: "consented@client.example", Protection: record.Consented},
	}}}
	if got := fmt.Sprint(clientsOf(m)); got != "[consented@client.example key@client.example sealed@client.example]" {
		t.Fatalf("clients %s", got)
	}
}

// TestViewLoadsInBackground: a view opened in the background answers with
// the first messages it read and fills in as it reads on, ending with the
// same messages and details as a view read whole.
func TestViewLoadsInBackground(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 64<<10)
	ctx := context.Background()
	const n = 3 * viewChunk / 2
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				m, body := testMessage(i, fmt.Sprintf("client%d@client.example", i%7))
				if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
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
	if err := a.RecordEvent(ctx, Event{MessageID: "msg0007", Time: f.clock(), Kind: Delivered, Recipients: []string{"client0@client.example"}, Reply: "250 OK"}); err != nil {
		t.Fatal(err)
	}
	a.Close()

	whole, err := OpenView(f.dir, f.priv)
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	v, err := OpenViewWith(f.dir, f.priv, ViewOptions{Background: true, DetailsCache: 10, BodyCacheBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if got := len(v.Messages()); got == 0 || got >= n {
		t.Fatalf("opened in the background, the view holds %d of %d messages at once; want some, not all", got, n)
	}
	var msgs []ViewListing
	cursor, _ := v.Changes(ViewCursor{}, func(l ViewListing) { msgs = append(msgs, l) }, func(ViewListing) {}, func(*ViewRefusal) {})
	if err := v.LoadAll(ctx); err != nil {
		t.Fatal(err)
	}
	added := 0
	_, ok := v.Changes(cursor, func(l ViewListing) {
		if l.Seq > msgs[len(msgs)-1].Seq {
			added++
		}
	}, func(ViewListing) {}, func(*ViewRefusal) {})
	if !ok || len(msgs)+added != n {
		t.Fatalf("after loading: %d messages at first and %d added (%v), want %d in all", len(msgs), added, ok, n)
	}
	want := whole.Messages()
	got := v.Messages()
	for i := range want {
		w, err1 := whole.Details(want[i])
		g, err2 := v.Details(got[i])
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		wj, _ := json.Marshal(w)
		gj, _ := json.Marshal(g)
		if string(wj) != string(gj) || g.Subject == "" || len(g.Decisions) != 1 {
			t.Fatalf("message %d in the background view: %+v\nwhole: %+v", i, g, w)
		}
		if g.ID == "msg0007" && (len(g.Events) != 1 || g.Events[0].Reply != "250 OK") {
			t.Errorf("msg0007's delivery: %+v", g.Events)
		}
	}
	if n := v.details.order.Len(); n > 10 {
		t.Errorf("%d details kept, the cache holds 10", n)
	}
	for _, m := range got[:50] {
		if _, err := v.Body(m); err != nil {
			t.Fatal(err)
		}
	}
	if v.bodies.used > 4<<10 {
		t.Errorf("%d octets of bodies kept, the cache holds 4096", v.bodies.used)
	}
}
