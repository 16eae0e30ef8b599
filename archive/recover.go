package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// recover finds where the chain ends, setting aside a torn tail, and
// starts the chain when the archive is new. Before it writes anything, it
// compares the chain with head, the head file (nil: none).
func (a *Archive) recover(head *headFile) error {
	segs, err := listSegments(a.dir)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	// A segment created just before a crash may be empty.
	for len(segs) > 0 {
		fi, err := os.Stat(filepath.Join(a.dir, segs[len(segs)-1]))
		if err != nil || fi.Size() > 0 {
			break
		}
		os.Remove(filepath.Join(a.dir, segs[len(segs)-1]))
		segs = segs[:len(segs)-1]
	}
	// Only the open segment is read through (the newest records, and a
	// torn tail); what a start must know of older records is in the index.
	var (
		first, end          uint64
		headHash, headInSeg string
	)
	if len(segs) > 0 {
		h, _, _, err := recordAt(a.dir, segs[0], 0)
		if err != nil && !errors.Is(err, errIncomplete) {
			return fmt.Errorf("archive: %w", err)
		}
		first = h.Seq
	}
	// Damage found below is named as such first; the node and the head
	// file are compared before anything is written.
	var last *storedRecord // the open segment's newest complete record
	checkHead := func() error {
		if len(segs) > 0 {
			if err := a.checkChainNode(last); err != nil {
				return err
			}
		}
		if head == nil {
			return nil
		}
		if err := a.findOlder(segs, head.Seq, &end, &headHash, &headInSeg); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		return a.checkHeadAtOpen(head, first, end, headHash, headInSeg)
	}
	if len(segs) == 0 {
		if err := checkHead(); err != nil {
			return err
		}
		return a.startChain()
	}
	name := segs[len(segs)-1]
	path := filepath.Join(a.dir, name)
	sr, f, err := openSegment(path, false)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	for {
		rec, err := sr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errIncomplete) {
			f.Close()
			return a.tornTail(segs, path, sr.off, sr.size, last, checkHead)
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("%w: %w", errDamagedAtOpen, err)
		}
		last, end = rec, rec.h.Seq
		if head != nil && rec.h.Seq == head.Seq {
			headHash, headInSeg = rec.hash, name
		}
	}
	f.Close()
	if last == nil {
		return fmt.Errorf("archive: %s is empty", name)
	}
	if err := checkHead(); err != nil {
		return err
	}
	a.seq, a.last = last.h.Seq, last.hash
	a.headSeg, a.headTime = name, last.h.Time
	if last.h.Kind == kindSeal {
		return a.newSegmentFile(segNumber(name) + 1)
	}
	return a.openForAppend(name, sr.off)
}

// errDamagedAtOpen stops Open at a record that is there but wrong.
var errDamagedAtOpen = errors.New("archive is damaged, nothing more is written to it until an admin looks (sealpost archive verify)")

// tornTail deals with bytes at the end of the open segment (path, of size
// bytes) that are not a whole record, from byte end on; last is the
// segment's last complete record, nil when it has none. A crash in the
// middle of a write leaves such a tail, and nothing complete after it: the
// tail is set aside. A complete record after it means a record that is
// there was damaged (its length most likely): that stops Open like any
// damage. checkHead runs once the bytes are known not to be damage, before
// anything is written.
func (a *Archive) tornTail(segs []string, path string, end, size int64, last *storedRecord, checkHead func() error) error {
	name := filepath.Base(path)
	at, found, err := recordAfter(path, end, size)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if found {
		return fmt.Errorf("%w: %w", errDamagedAtOpen, damagedLength(name, end, at))
	}
	if err := checkHead(); err != nil {
		return err
	}
	if last != nil {
		return a.setAsideTail(path, end, last.h.Seq, last.hash)
	}
	// The segment's first record was torn: the chain goes on from the
	// seal of the segment before (a new segment is started only once that
	// seal is durable), or starts when this is the first segment.
	if len(segs) == 1 && segNumber(name) == 1 {
		return a.setAsideTail(path, 0, 0, "")
	}
	prev := segName(segNumber(name) - 1)
	if len(segs) < 2 || segs[len(segs)-2] != prev {
		return fmt.Errorf("%w: %s holds no complete record and %s, whose seal it would follow, is missing", errDamagedAtOpen, name, prev)
	}
	seal, err := lastRecord(filepath.Join(a.dir, prev))
	if err != nil {
		return fmt.Errorf("%w: %w", errDamagedAtOpen, err)
	}
	if seal.h.Kind != kindSeal {
		return fmt.Errorf("%w: %s holds no complete record and %s does not end in a seal", errDamagedAtOpen, name, prev)
	}
	return a.setAsideTail(path, 0, seal.h.Seq, seal.hash)
}

// damagedLength describes a record cut short with a complete one after it.
func damagedLength(segment string, end, next int64) error {
	return &recordError{segment: segment, offset: end,
		msg: fmt.Sprintf("not a whole record, yet a complete record follows at byte %d: a damaged record (its length), not a torn tail", next)}
}

// lastRecord reads a closed segment through and returns its last record.
func lastRecord(path string) (*storedRecord, error) {
	sr, f, err := openSegment(path, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var last *storedRecord
	for {
		rec, err := sr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errIncomplete) {
			return nil, &recordError{segment: sr.name, offset: sr.off, msg: "truncated: not a whole record"}
		}
		if err != nil {
			return nil, err
		}
		last = rec
	}
	if last == nil {
		return nil, fmt.Errorf("%s holds no record", sr.name)
	}
	return last, nil
}

// recordAfter looks in the first size bytes of the segment at path, past
// byte from, for a complete record that checks out (its magic, a header
// that parses, its hash and its payload's). A torn tail has none: only a
// crash in the middle of the last write leaves bytes that are not a whole
// record. (Segments only grow, so neither has a write in progress in the
// size a reader saw.)
func recordAfter(path string, from, size int64) (int64, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	const chunk = 1 << 20
	buf := make([]byte, chunk+len(recordMagic)-1) // a magic across two chunks is seen in the first
	for off := from + 1; off+8 <= size; off += chunk {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil && err != io.EOF {
			return 0, false, err
		}
		for i := 0; i < min(n, chunk); {
			j := bytes.Index(buf[i:n], []byte(recordMagic))
			if j < 0 || i+j >= chunk {
				break
			}
			at := off + int64(i+j)
			sr := &segmentReader{name: filepath.Base(path), r: bufio.NewReader(io.NewSectionReader(f, at, size-at)), size: size - at}
			if _, err := sr.next(); err == nil {
				return at, true, nil
			}
			i += j + 1
		}
	}
	return 0, false, nil
}

// setAsideTail moves the bytes of the segment at path from end on to
// Dir/torn, truncates the segment there, and records what was set aside.
// The chain goes on from record seq with hash last; at the start of the
// first segment (seq 0), the chain starts again.
func (a *Archive) setAsideTail(path string, end int64, seq uint64, last string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	fi, _ := f.Stat()
	tail := make([]byte, fi.Size()-end)
	if _, err := f.ReadAt(tail, end); err != nil {
		f.Close()
		return fmt.Errorf("archive: %w", err)
	}
	tornDir := filepath.Join(a.dir, "torn")
	os.MkdirAll(tornDir, 0o700)
	aside := filepath.Join(tornDir, fmt.Sprintf("%s.%d.bin", filepath.Base(path), a.opts.Now().Unix()))
	if err := writeFileSync(aside, tail); err != nil {
		f.Close()
		return err
	}
	if err := f.Truncate(end); err != nil {
		f.Close()
		return fmt.Errorf("archive: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("archive: %w", err)
	}
	f.Close()
	sum := sha256.Sum256(tail)
	if err := a.openForAppend(filepath.Base(path), end); err != nil {
		return err
	}
	if seq == 0 {
		if err := a.writeInit(); err != nil {
			return err
		}
	} else {
		a.seq, a.last = seq, last
	}
	a.log.Warn("archive: set aside an incomplete record left by a crash; every complete record is kept",
		"segment", filepath.Base(path), "bytes", len(tail), "set_aside", aside)
	// The record names the bytes set aside by their SHA-256 (in ID).
	h := header{Kind: kindTorn, Offset: end, Length: int64(len(tail)), SetAside: filepath.Base(aside), ID: hex.EncodeToString(sum[:])}
	return a.appendDirect(&h, nil)
}

// findOlder completes what the open segment's records told of the chain's
// end (end 0: it holds none) and of the record the head file names (seq;
// hash "": not found yet), reading older segments from the newest back,
// as far as needed: the head file names the newest record, or one a few
// batches older, so this usually reads nothing.
func (a *Archive) findOlder(segs []string, seq uint64, end *uint64, hash, in *string) error {
	for i := len(segs) - 2; i >= 0 && (*end == 0 || *hash == "" && seq <= *end); i-- {
		path := filepath.Join(a.dir, segs[i])
		if *hash == "" {
			h, _, _, err := recordAt(a.dir, segs[i], 0)
			if err != nil && !errors.Is(err, errIncomplete) {
				return err
			}
			if *end != 0 && h.Seq > seq {
				continue
			}
		}
		err := scanHeaders(path, func(h *header, raw []byte) {
			*end = max(*end, h.Seq)
			if h.Seq == seq {
				sum := sha256.Sum256(raw)
				*hash, *in = hex.EncodeToString(sum[:]), segs[i]
			}
		})
		if err != nil && !errors.Is(err, errIncomplete) {
			return err
		}
	}
	return nil
}
