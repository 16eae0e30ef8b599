package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sealpost/sealpost/archive"
)

// Offline works on the spool of a relay that is not running. It holds the
// spool's lock, so a relay cannot start meanwhile.
type Offline struct {
	s       *spool
	entries []*entry
}

// OpenOffline locks the spool at dir; it fails if a relay is running.
func OpenOffline(dir string) (*Offline, error) {
	if _, err := os.Stat(filepath.Join(dir, queueDir)); errors.Is(err, os.ErrNotExist) {
		return &Offline{}, nil // nothing was ever queued
	}
	s, err := openSpool(dir)
	if err != nil {
		return nil, err
	}
	entries, _, errs := s.loadQueue()
	if len(errs) > 0 {
		s.close()
		return nil, errors.Join(errs...)
	}
	return &Offline{s: s, entries: entries}, nil
}

// Close releases the spool.
func (o *Offline) Close() error {
	if o.s == nil {
		return nil
	}
	return o.s.close()
}

// List returns what is queued, by id.
func (o *Offline) List() []Message {
	out := make([]Message, 0, len(o.entries))
	for _, e := range o.entries {
		out = append(out, describeEntry(e))
	}
	return out
}

func (o *Offline) find(prefix string) (*entry, error) {
	return findByID(slices.Values(o.entries), prefix)
}

// Retry makes a message due at the next start.
func (o *Offline) Retry(prefix string) (string, error) {
	e, err := o.find(prefix)
	if err != nil {
		return "", err
	}
	e.state.NextAttempt = time.Now()
	return e.meta.ID, e.saveState()
}

// Drop removes a message for good. record gets, first, the outcomes the
// archive lacks and the drop (naming the recipients who never got it): the
// message leaves the spool only once they are recorded, so the clinical
// record never loses that a client got it, or that it was dropped.
func (o *Offline) Drop(prefix string, record func([]archive.Event) error) (string, error) {
	e, err := o.find(prefix)
	if err != nil {
		return "", err
	}
	e.markDropped(time.Now())
	if err := record(e.state.Unrecorded); err != nil {
		return e.meta.ID, fmt.Errorf("not dropped: the archive cannot record it: %w", err)
	}
	if err := e.remove(); err != nil { // fsyncs the folder
		return "", err
	}
	return e.meta.ID, nil
}
