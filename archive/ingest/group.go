package ingest

import (
	"context"
	"sync"
)

// Group runs the watchers of every account whose mailbox is read; a reload
// of the configuration replaces them all at once.
type Group struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Replace stops the watchers running, if any, and runs ws until the next
// Replace or Stop.
func (g *Group) Replace(ws []*Watcher) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	for _, w := range ws {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			w.Run(ctx)
		}()
	}
}

// Stop stops the watchers and waits for them to end.
func (g *Group) Stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopLocked()
}

func (g *Group) stopLocked() {
	if g.cancel != nil {
		g.cancel()
		g.wg.Wait()
		g.cancel = nil
	}
}
