package main

import (
	"context"
	"sync"
	"time"

	"github.com/sealpost/sealpost/archive"
)

// dayCounter counts a day's records through the archive's index for the
// Today page and the status it shows: the page asks twice per visit (the
// status's refusals, the record's line), and the counts stand until the
// chain grows.
type dayCounter struct {
	dir  string
	head func() uint64

	mu     sync.Mutex
	since  time.Time
	atHead uint64
	counts archive.DayCounts
	valid  bool
}

func (d *dayCounter) countSince(ctx context.Context, since time.Time) (archive.DayCounts, error) {
	head := d.head()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.valid && head == d.atHead && since.Equal(d.since) {
		return d.counts, nil
	}
	c, err := archive.CountSince(ctx, d.dir, since)
	if err != nil {
		return archive.DayCounts{}, err
	}
	d.counts, d.since, d.atHead, d.valid = c, since, head, true
	return c, nil
}
