package archive

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// HoldInfo is an active legal hold.
type HoldInfo struct {
	ID      string    `json:"id"`
	Since   string    `json:"since,omitempty"`
	Until   string    `json:"until,omitempty"`
	Clients int       `json:"clients"` // how many client addresses it covers (they are kept as hashes)
	Set     time.Time `json:"set"`
}

type holdPayload struct {
	Clients []string `json:"clients"`
	Reason  string   `json:"reason"`
}

// do runs f in the writer, between batches: it may append and change segments.
func (a *Archive) do(ctx context.Context, f func() error) error {
	r := &appendReq{op: f, done: make(chan error, 1)}
	if err := a.send(ctx, r); err != nil {
		return err
	}
	return <-r.done
}

// Hold keeps records from pruning: those of the given client addresses, or
// (with no clients) those in the date range. Dates are YYYY-MM-DD, inclusive;
// either may be empty for an open end.
func (a *Archive) Hold(ctx context.Context, clients []string, since, until, reason string) (string, error) {
	for _, d := range []string{since, until} {
		if d != "" {
			if _, err := time.Parse("2006-01-02", d); err != nil {
				return "", fmt.Errorf("%q is not YYYY-MM-DD", d)
			}
		}
	}
	if len(clients) == 0 && since == "" && until == "" {
		return "", fmt.Errorf("a hold needs a client or a date range")
	}
	idb := make([]byte, 6)
	rand.Read(idb)
	id := "hold-" + hex.EncodeToString(idb)
	payload, _, err := a.encrypt(holdPayload{Clients: clients, Reason: reason}, nil)
	if err != nil {
		return "", err
	}
	h := header{Kind: kindHold, Hold: id, Since: since, Until: until}
	for _, c := range clients {
		h.Addrs = append(h.Addrs, a.addrHash(c))
	}
	return id, a.submit(ctx, h, payload)
}

// Release lifts a hold.
func (a *Archive) Release(ctx context.Context, id string) error {
	holds, err := activeHolds(a.dir)
	if err != nil {
		return err
	}
	if _, ok := holds[id]; !ok {
		return fmt.Errorf("no active hold %s", id)
	}
	return a.submit(ctx, header{Kind: kindRelease, Hold: id}, nil)
}

type activeHold struct {
	h       header
	segment string
}

// activeHolds reads every hold and release in the chain.
func activeHolds(dir string) (map[string]activeHold, error) {
	holds := map[string]activeHold{}
	err := walk(dir, func(l located) {
		switch l.h.Kind {
		case kindHold:
			holds[l.h.Hold] = activeHold{h: l.h, segment: l.seg}
		case kindRelease:
			delete(holds, l.h.Hold)
		}
	})
	return holds, err
}

// ListHolds reads the active holds of the archive in dir.
func ListHolds(dir string) ([]HoldInfo, error) {
	holds, err := indexedHolds(context.Background(), dir)
	if err != nil {
		return nil, err
	}
	var out []HoldInfo
	for _, h := range holds {
		out = append(out, HoldInfo{ID: h.h.Hold, Since: h.h.Since, Until: h.h.Until, Clients: len(h.h.Addrs), Set: h.h.Time})
	}
	return out, nil
}

// PruneReport says what Prune removed (or would).
type PruneReport struct {
	Removed []string
	Kept    string // why the oldest remaining segment stays
}

// segmentSummary is what prune needs to know of a closed segment.
type segmentSummary struct {
	pruned  prunedSegment
	first   time.Time
	last    time.Time
	addrs   map[string]bool
	holdIDs []string
	sealed  bool
}

// Prune removes, oldest first, whole closed segments whose newest record is
// older than retention and that no hold covers, and records in the chain
// which segments went and how they were sealed, so the chain still verifies.
//
// The archive must verify first: the holds are read from the records'
// headers, and a hold whose record cannot be read must not let what it
// holds go. Records written meanwhile are the writer's own.
func (a *Archive) Prune(ctx context.Context, retention time.Duration, dryRun bool) (*PruneReport, error) {
	if _, err := verify(a.dir, nil); err != nil {
		return nil, fmt.Errorf("archive: nothing pruned: %w (sealpost archive verify lists the problems)", err)
	}
	rep := &PruneReport{}
	err := a.do(ctx, func() error {
		holds, err := activeHolds(a.dir)
		if err != nil {
			return err
		}
		segs, err := listSegments(a.dir)
		if err != nil {
			return err
		}
		cutoff := a.opts.Now().Add(-retention)
		var remove []segmentSummary
		for _, name := range segs {
			if name == a.segName {
				rep.Kept = name + " is the segment being written"
				break
			}
			s, err := summarize(filepath.Join(a.dir, name))
			if err != nil {
				return err
			}
			why := s.keep(cutoff, holds)
			if why == "" && a.opts.MayRemove != nil {
				why = a.opts.MayRemove(name)
			}
			if why != "" {
				rep.Kept = name + " " + why
				break
			}
			remove = append(remove, s)
		}
		for _, s := range remove {
			rep.Removed = append(rep.Removed, s.pruned.Name)
		}
		if dryRun || len(remove) == 0 {
			return nil
		}
		h := header{Kind: kindPrune, Carry: a.carry()}
		for _, s := range remove {
			h.Pruned = append(h.Pruned, s.pruned)
		}
		if err := a.appendBatch([]*appendReq{{h: h, sign: a.signPrune}}); err != nil {
			return err
		}
		// The head file is past the prune record, on disk, before any
		// segment goes: the relay's own head file never names a record
		// that was pruned, so one that does shows segments removed under
		// a prune record written after it (anyone with the folder has the
		// seal key to sign one).
		if a.headErr == nil {
			a.headErr = syncFile(a.headPath)
		}
		if a.headErr != nil {
			return fmt.Errorf("archive: the prune is recorded, but nothing was removed: the head file: %w", a.headErr)
		}
		for _, s := range remove {
			if err := os.Remove(filepath.Join(a.dir, s.pruned.Name)); err != nil {
				return fmt.Errorf("archive: the prune is recorded but %s could not be removed: %w", s.pruned.Name, err)
			}
		}
		return syncDir(a.dir)
	})
	return rep, err
}

// carry is what the prune record keeps for later starts (pruneCarry).
func (a *Archive) carry() *pruneCarry {
	c := &pruneCarry{Consent: a.LastConsentID()}
	a.ingestMu.Lock()
	for _, s := range a.ingestAt {
		c.Ingest = append(c.Ingest, s)
	}
	a.ingestMu.Unlock()
	sort.Slice(c.Ingest, func(i, j int) bool {
		x, y := c.Ingest[i], c.Ingest[j]
		return x.Account+"\x00"+x.Folder < y.Account+"\x00"+y.Folder
	})
	return c
}

// signPrune signs a prune record with the seal key.
func (a *Archive) signPrune(h *header) {
	h.Sig = hex.EncodeToString(ed25519.Sign(a.sealKey, pruneMessage(h)))
}

func summarize(path string) (segmentSummary, error) {
	s := segmentSummary{addrs: map[string]bool{}}
	s.pruned.Name = filepath.Base(path)
	first := true
	var last header
	err := scanHeaders(path, func(h *header, raw []byte) {
		if first {
			s.first, s.pruned.FirstSeq, s.pruned.First, first = h.Time, h.Seq, h.Prev, false
		}
		for _, a := range h.Addrs {
			s.addrs[a] = true
		}
		if h.Kind == kindHold {
			s.holdIDs = append(s.holdIDs, h.Hold)
		}
		if h.Kind == kindSeal {
			s.sealed, s.pruned.SealHeader = true, append([]byte(nil), raw...)
		}
		last = *h
	})
	if err != nil {
		return s, err
	}
	s.last = last.Time
	s.pruned.LastSeq = last.Seq
	s.pruned.From, s.pruned.To = s.first.Format(time.RFC3339), s.last.Format(time.RFC3339)
	return s, nil
}

// keep says why a segment may not be pruned ("" when it may).
func (s segmentSummary) keep(cutoff time.Time, holds map[string]activeHold) string {
	if !s.sealed {
		return "is not sealed"
	}
	if !s.last.Before(cutoff) {
		return "holds records younger than the retention period"
	}
	for _, id := range s.holdIDs {
		if _, ok := holds[id]; ok {
			return "holds an active legal hold"
		}
	}
	for id, h := range holds {
		if len(h.h.Addrs) > 0 {
			for _, a := range h.h.Addrs {
				if s.addrs[a] {
					return "holds records of a client under hold " + id
				}
			}
			continue
		}
		from, to := s.first.Format("2006-01-02"), s.last.Format("2006-01-02")
		if (h.h.Until == "" || from <= h.h.Until) && (h.h.Since == "" || to >= h.h.Since) {
			return "holds records in the date range of hold " + id
		}
	}
	return ""
}
