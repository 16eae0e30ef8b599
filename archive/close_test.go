package archive

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// TestCloseDuringWrites: Close while records and operations are being
// handed to the writer. Every call returns nil (and its record is in the
// chain) or ErrClosed; none panics, and calls after Close return ErrClosed.
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
						if errors.Is(err, ErrClosed) {
							return
						}
						if errors.Is(err, context.Canceled) {
							continue // not handed over: not written
						}
						if err != nil {
							t.Errorf("during Close: %v, want nil or ErrClosed", err)
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
				if err := a.RecordEvent(ctx, Event{MessageID: "msg0001", Kind: Deferred}); !errors.Is(err, ErrClosed) {
					t.Errorf("a record after Close: %v, want ErrClosed", err)
				}
				if err := a.CloseSegment(ctx); !errors.Is(err, ErrClosed) {
					t.Errorf("an operation after Close: %v, want ErrClosed", err)
				}
				rep, err := Verify(f.dir, nil)
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
