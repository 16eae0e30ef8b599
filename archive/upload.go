package archive

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"time"
)

// What the off-site copy (archive/offsite) reads of the archive folder: it
// copies files and never writes the folder, so it needs to know which
// segments are complete, where a segment's last whole record ends, and
// which segments legal holds cover.

// SegmentInfo is one segment as the off-site copy sees it.
type SegmentInfo struct {
	Name    string
	Size    int64     // up to the end of its last whole record
	Newest  time.Time // its newest record's time
	Records int
	Sealed  bool // it ends in its seal: complete, never written again
}

// IsSegmentName says whether name is a segment file's name.
func IsSegmentName(name string) bool { return segmentName.MatchString(name) }

// Segments lists the segment files of the archive in dir, oldest first.
func Segments(dir string) ([]string, error) { return listSegments(dir) }

// ReadSegmentInfo reads a segment's record headers. Bytes after its last
// whole record (a write under way) are left out of Size.
func ReadSegmentInfo(dir, name string) (SegmentInfo, error) {
	info := SegmentInfo{Name: name}
	err := scanHeaders(filepath.Join(dir, name), func(h *header, raw []byte) {
		info.Size += 8 + int64(len(raw)) + 8 + h.PLen + 32
		info.Newest = h.Time
		info.Sealed = h.Kind == kindSeal
		info.Records++
	})
	if errors.Is(err, errIncomplete) {
		err = nil
	}
	return info, err
}

// KeyFiles are the file names, besides segments, that verify and
// export read in an archive folder (the seal key and its public half, the
// address-hash key).
var KeyFiles = []string{"seal.pub", "seal.key", "address-hash.key"}

// ActiveHoldIDs lists the ids of the active legal holds, sorted: what the
// off-site copy compares to know whether the holds changed.
func ActiveHoldIDs(ctx context.Context, dir string) ([]string, error) {
	holds, err := indexedHolds(ctx, dir)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(holds))
	for id := range holds {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// HeldSegments says, of the sealed segments named, which active legal
// holds keep (segment name -> why), read the way prune reads them. It reads
// the segments' headers only while a hold is active.
func HeldSegments(ctx context.Context, dir string, names []string) (map[string]string, error) {
	holds, err := indexedHolds(ctx, dir)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if len(holds) == 0 {
		return out, nil
	}
	// Past any retention: what keep still says is a hold's.
	never := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, name := range names {
		s, err := summarize(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if !s.sealed {
			continue
		}
		if why := s.keep(never, holds); why != "" {
			out[name] = why
		}
	}
	return out, nil
}

// indexedHolds are the active holds, found through the index.
func indexedHolds(ctx context.Context, dir string) (map[string]activeHold, error) {
	found, err := findRecords(ctx, dir, recordQuery{kinds: []string{kindHold, kindRelease}})
	if err != nil {
		return nil, err
	}
	holds := map[string]activeHold{}
	for _, l := range found {
		if l.h.Kind == kindHold {
			holds[l.h.Hold] = activeHold{h: l.h, segment: l.seg}
		} else {
			delete(holds, l.h.Hold)
		}
	}
	return holds, nil
}
