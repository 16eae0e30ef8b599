package dirsync

import (
	"fmt"
	"sync"

	"github.com/sealpost/sealpost/internal/fsutil"
)

// Group fsyncs a folder for many callers at once: whoever asks while a sync
// is running waits for the next one, which covers all of them. Under load
// one fsync serves every message that arrived in the meantime.
type Group struct {
	dir string
	// Fsync syncs the folder: fsutil.SyncDir, or in tests one that watches
	// or delays it.
	Fsync   func(dir string) error
	mu      sync.Mutex
	running bool
	next    *batch
}

type batch struct {
	done    chan struct{}
	err     error
	callers int // how many share it
}

// New returns the Group of dir.
func New(dir string) *Group { return &Group{dir: dir, Fsync: syncDir} }

// Sync returns once an fsync of the folder that began after the call has
// ended: what the caller created, renamed or removed in it is durable.
func (g *Group) Sync() error {
	g.mu.Lock()
	if g.next == nil {
		g.next = &batch{done: make(chan struct{})}
	}
	b := g.next
	b.callers++
	if !g.running {
		g.running = true
		g.next = nil
		g.mu.Unlock()
		g.run(b)
	} else {
		g.mu.Unlock()
	}
	<-b.done
	return b.err
}

// run syncs for batch b, then hands the batch that gathered meanwhile to a
// new leader, so no caller waits for more than two fsyncs.
func (g *Group) run(b *batch) {
	b.err = g.Fsync(g.dir)
	close(b.done)
	g.mu.Lock()
	next := g.next
	g.next = nil
	if next == nil {
		g.running = false
	}
	g.mu.Unlock()
	if next != nil {
		go g.run(next)
	}
}

func syncDir(dir string) error {
	if err := fsutil.SyncDir(dir); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}
