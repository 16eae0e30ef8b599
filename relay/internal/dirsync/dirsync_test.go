package dirsync

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestSyncShared: callers who ask while an fsync runs share the next one:
// ten callers behind a running fsync cost one more, not ten; each gets the
// outcome of an fsync that began after it asked.
func TestSyncShared(t *testing.T) {
	g := New(t.TempDir())
	running, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	fail := errors.New("disk gone")
	g.Fsync = func(string) error {
		if calls.Add(1) == 1 {
			close(running)
			<-release
			return nil
		}
		return fail
	}
	first := make(chan error)
	go func() { first <- g.Sync() }()
	<-running
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- g.Sync()
		}()
	}
	for {
		g.mu.Lock()
		queued := g.next != nil && g.next.callers == 10
		g.mu.Unlock()
		if queued {
			break
		}
		runtime.Gosched()
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the first caller: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != fail {
			t.Errorf("a caller behind the running fsync got %v, want the next fsync's %v", err, fail)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d fsyncs for 11 callers, want 2", n)
	}
}
