package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// openIndex opens the record index, brings it up to the archive's end (or
// builds it, which reads every segment's headers once) and takes from it
// what the start needs. An index that cannot be written at all (a full
// disk, a read-only folder) does not stop the relay: the start reads every
// segment instead, as it would to build it.
func (a *Archive) openIndex() error {
	if _, err := os.Stat(IndexFile(a.dir)); errors.Is(err, os.ErrNotExist) {
		a.log.Info("archive: building the index of the archive from its segments (once; about 8 s per 100,000 messages on a small server)", "path", IndexFile(a.dir))
	}
	x, err := openIndexFor(a.opts.Context, a.dir)
	if err != nil {
		var rerr *recordError
		if errors.As(err, &rerr) {
			return fmt.Errorf("%w: %w", errDamagedAtOpen, err)
		}
		if cerr := a.opts.Context.Err(); cerr != nil {
			return fmt.Errorf("archive: stopped while building the index: %w", cerr)
		}
		a.log.Error("archive: the index cannot be used; every record header is read at start instead", "path", IndexFile(a.dir), "err", err)
		return a.scanDerived()
	}
	last, ingest, err := x.derived(a.opts.Context)
	if err != nil {
		x.close()
		return fmt.Errorf("archive: index: %w", err)
	}
	a.lastConsent = last
	for _, s := range ingest {
		a.advance(s)
	}
	a.index = x
	a.indexQ = make(chan []indexRow, 64)
	a.indexDone = make(chan struct{})
	a.indexMoved = make(chan struct{})
	return nil
}

// scanDerived reads what a start needs from every record header, without
// an index.
func (a *Archive) scanDerived() error {
	segs, err := listSegments(a.dir)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	for _, s := range segs {
		if err := a.opts.Context.Err(); err != nil {
			return err
		}
		err := scanHeaders(filepath.Join(a.dir, s), func(h *header, _ []byte) {
			if h.Kind == kindConsent && h.Consent > a.lastConsent {
				a.lastConsent = h.Consent
			}
			if h.Kind == kindPrune && h.Carry != nil {
				a.lastConsent = max(a.lastConsent, h.Carry.Consent)
				for _, s := range h.Carry.Ingest {
					a.advance(s)
				}
			}
			if h.Dedup != "" {
				a.rememberIngest(h.Dedup, h.Src)
			}
		})
		if err != nil && !errors.Is(err, errIncomplete) {
			return fmt.Errorf("archive: %w", err)
		}
	}
	return nil
}

// indexWrite is called before the indexer writes a batch or catches up
// from the segments (an empty batch); false skips it (tests: a crash
// between the archive's fsync and the index's write writes neither).
var indexWrite = func([]indexRow) bool { return true }

// indexer writes each durable batch into the index, off the path of the
// records' acknowledgement. A batch it did not get (the queue was full) or
// could not write leaves the index behind: the next batch, or the next
// start, reads the missing records from the segments. An empty batch asks
// it to catch up from the segments.
func (a *Archive) indexer() {
	defer close(a.indexDone)
	ctx := context.Background()
	head, err := a.index.head(ctx)
	a.published(head.seq)
	var failing bool
	for rows := range a.indexQ {
		if !indexWrite(rows) {
			continue
		}
		switch {
		case err != nil:
		case len(rows) == 0:
			err = a.index.follow(ctx, a.dir, head)
		case rows[len(rows)-1].h.Seq <= head.seq:
			continue // read from the segments already
		case rows[0].h.Seq == head.seq+1:
			err = a.index.add(ctx, rows)
		default:
			err = a.index.follow(ctx, a.dir, head)
		}
		if err == nil {
			head, err = a.index.head(ctx)
		}
		switch {
		case err != nil && !failing:
			a.log.Error("archive: cannot write the index; records are still written, and the next start reads them into it", "path", IndexFile(a.dir), "err", err)
		case err == nil && failing:
			a.log.Info("archive: the index is written again", "path", IndexFile(a.dir))
		}
		failing = err != nil
		if err != nil {
			// Try again from the segments with the next batch.
			head, err = a.index.head(ctx)
		}
		a.published(head.seq)
	}
}

// published notes how far the index has got, for IndexCaughtUp.
func (a *Archive) published(seq uint64) {
	a.indexMu.Lock()
	defer a.indexMu.Unlock()
	a.indexedSeq = seq
	if a.indexMoved != nil {
		close(a.indexMoved)
	}
	a.indexMoved = make(chan struct{})
}

// toIndex hands a durable batch to the indexer without waiting.
func (a *Archive) toIndex(rows []indexRow) {
	if a.indexQ == nil || len(rows) == 0 {
		return
	}
	select {
	case a.indexQ <- rows:
	default: // the indexer is behind: it reads these from the segments
	}
}

// IndexCaughtUp waits until the index holds every record written before
// the call (tests, and commands that read the index right after writing).
func (a *Archive) IndexCaughtUp(ctx context.Context) error {
	if a.index == nil {
		return nil
	}
	seq, _ := a.ChainHead()
	a.sendMu.RLock()
	if a.closed {
		a.sendMu.RUnlock()
		return errClosed
	}
	select {
	case a.indexQ <- nil:
	case <-ctx.Done():
	}
	a.sendMu.RUnlock()
	for {
		a.indexMu.Lock()
		done, moved := a.indexedSeq >= seq, a.indexMoved
		a.indexMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-moved:
		}
	}
}
