package archive

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Report is what Verify found.
type Report struct {
	Segments int
	Records  uint64
	Bytes    int64
	HeadSeq  uint64 // the newest record
	Head     string // its hash: the chain head an export names
	// Pending is bytes after the newest complete record of the open segment
	// while the relay holds the archive: a write in progress.
	Pending int64
	// Torn is such bytes while no process writes the archive: a torn tail,
	// left by a crash in the middle of a write, or by cutting the archive
	// inside a record. It is a problem unless VerifyOptions.AllowTornTail.
	Torn int64
	// HeadFile is the head file the chain's end was compared with ("" when
	// none was), HeadFileSeq the record it says the chain reached, and
	// Missing how many of the records up to it are not there.
	HeadFile    string
	HeadFileSeq uint64
	Missing     uint64
	// EndChecked says the chain's end was compared with a head file or a
	// chain head seen earlier (VerifyOptions.Expect). Without either,
	// records cut off the end leave a chain that verifies.
	EndChecked bool
	Problems   []string
	// Warnings are findings that do not fail verification: prune records
	// written before prune records were signed.
	Warnings []string
}

// VerifyOptions say what Verify compares the chain with.
type VerifyOptions struct {
	// Expect are chain heads seen earlier: each must still be in the chain.
	Expect []ChainPoint
	// HeadFile is the head file to compare the chain's end with; "" is the
	// one next to the archive (HeadFile(dir)), when there is one. That one
	// is the relay's own, never behind a prune; one given here may be an
	// older copy, whose record may have been pruned since.
	HeadFile string
	// NoHead compares with no head file (an auditor given the archive
	// folder alone): records cut off the end do not show.
	NoHead bool
	// AllowTornTail accepts bytes after the newest record that are not a
	// whole record (a crash in the middle of a write) with a warning.
	AllowTornTail bool
}

type unsignedPrune struct {
	segment string
	seq     uint64
}

// ErrDamaged is returned when Verify found a problem.
var ErrDamaged = errors.New("the archive failed verification")

// Verify checks every record's hash, the chain from each record to the
// one before, the sequence numbers, and the seal of every closed segment.
// It needs no private key: only the archive folder and its seal.pub. Each
// problem names the segment and the record.
//
// Prune records are signed with the seal key. An unsigned one passes with
// a warning only while no seal before it says prune records are signed
// (it was written before they were); after such a seal it is a problem.
func Verify(dir string, w io.Writer) (*Report, error) {
	return VerifyWith(dir, w, VerifyOptions{})
}

// ChainPoint is a record an earlier look at the archive saw: the chain head
// of an export's manifest, or of an earlier verify.
type ChainPoint struct {
	Seq  uint64
	Hash string
}

// VerifyExpecting is Verify, and also checks that each of the points is
// still in the chain as it was. The seals cannot show that records after
// the last seal (the segment being written) were removed, or that someone
// with the seal key rewrote the chain; a head kept from earlier can.
func VerifyExpecting(dir string, w io.Writer, expect []ChainPoint) (*Report, error) {
	return VerifyWith(dir, w, VerifyOptions{Expect: expect})
}

// VerifyWith is Verify, comparing the chain also with what o names. The
// head file is read before the segments: the archive only grows after it,
// so a relay writing meanwhile cannot make the chain look short.
func VerifyWith(dir string, w io.Writer, o VerifyOptions) (*Report, error) {
	expect := o.Expect
	rep := &Report{}
	var slots headSlots
	var headErr error
	if !o.NoHead {
		path := o.HeadFile
		if path == "" {
			path = HeadFile(dir)
		}
		slots, headErr = readHead(path)
		switch {
		case headErr == nil:
			rep.HeadFile = path
		case errors.Is(headErr, os.ErrNotExist) && o.HeadFile == "":
			headErr = nil
		case errors.Is(headErr, os.ErrNotExist):
			return nil, fmt.Errorf("archive: head file: %w", headErr)
		}
	}
	want := map[uint64]string{}
	for _, p := range expect {
		want[p.Seq] = p.Hash
	}
	found := map[uint64]bool{}
	pubHex, err := os.ReadFile(filepath.Join(dir, "seal.pub"))
	if err != nil {
		return nil, fmt.Errorf("archive: seal.pub: %w", err)
	}
	pb, err := hex.DecodeString(strings.TrimSpace(string(pubHex)))
	if err != nil || len(pb) != ed25519.PublicKeySize {
		return nil, errors.New("archive: seal.pub is not a seal key")
	}
	sealPub := ed25519.PublicKey(pb)
	segs, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if len(segs) == 0 && slots == nil {
		return nil, fmt.Errorf("archive: no segments in %s", dir)
	}
	problem := func(format string, args ...any) {
		rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
	}
	if headErr != nil {
		problem("%v", headErr)
	}
	var head *headFile
	if slots != nil {
		var forged int
		head, _, forged = slots.newest(sealPub)
		switch {
		case head == nil:
			problem("the head file %s is not signed with this archive's seal key (seal.pub): forged, or another archive's", rep.HeadFile)
			rep.HeadFile, headErr = "", errors.New("not signed")
		case forged > 0:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("the head file %s holds a head not signed with this archive's seal key beside the signed one, which is used (forged, or read while the relay overwrote it)", rep.HeadFile))
		}
	}
	var headSeg, headHash string       // where the record the head file names is, and its hash
	prunedAt := map[string]time.Time{} // segment -> when a signed prune record removed it
	var (
		prevHash  string
		prevSeq   uint64
		firstPrev string
		firstSeq  uint64
		pruned    []prunedSegment
		started   bool
		// the first seal that says prune records are signed
		signedFrom  uint64
		signedSince bool
		unsigned    []unsignedPrune
	)
	for i, name := range segs {
		if i > 0 && segNumber(name) != segNumber(segs[i-1])+1 {
			problem("%s: segment %s is missing before it (removed without a prune record)", name, segName(segNumber(segs[i-1])+1))
		}
		sr, f, err := openSegment(filepath.Join(dir, name), false)
		if err != nil {
			return nil, err
		}
		rep.Segments++
		rep.Bytes += sr.size
		var last *storedRecord
		for {
			rec, err := sr.next()
			if err == io.EOF {
				break
			}
			if errors.Is(err, errIncomplete) {
				if i == len(segs)-1 {
					// A torn tail has no complete record after it; one
					// that has is a damaged record, and what follows
					// it was acknowledged.
					at, found, err := recordAfter(filepath.Join(dir, name), sr.off, sr.size)
					if err != nil {
						f.Close()
						return nil, err
					}
					switch {
					case found:
						problem("%v", damagedLength(name, sr.off, at))
					case writerActive(dir):
						rep.Pending = sr.size - sr.off
					case o.AllowTornTail:
						rep.Torn = sr.size - sr.off
						rep.Warnings = append(rep.Warnings, tornTail(name, rep.Torn, prevSeq))
					default:
						rep.Torn = sr.size - sr.off
						problem("%s (--allow-torn-tail accepts it)", tornTail(name, rep.Torn, prevSeq))
					}
				} else {
					problem("%s: truncated: %d bytes after record %d are not a whole record", name, sr.size-sr.off, prevSeq)
				}
				break
			}
			if err != nil {
				problem("%v", err)
				if rec == nil {
					break // the framing is lost; nothing further in this segment can be read
				}
			}
			if head != nil && rec.h.Seq == head.Seq {
				headSeg, headHash = name, rec.hash
			}
			if h, ok := want[rec.h.Seq]; ok {
				found[rec.h.Seq] = true
				if rec.hash != h {
					problem("%s: record %d is not the record seen earlier (%s): the chain was rewritten from there on", name, rec.h.Seq, short(h))
				}
			}
			if !started {
				firstPrev, firstSeq, started = rec.h.Prev, rec.h.Seq, true
			} else {
				switch {
				case rec.h.Seq == prevSeq+2:
					problem("%s: record %d follows record %d: record %d is missing (removed, or records reordered)", name, rec.h.Seq, prevSeq, prevSeq+1)
				case rec.h.Seq > prevSeq+2:
					problem("%s: record %d follows record %d: %d records are missing, %d to %d (removed, or records reordered)",
						name, rec.h.Seq, prevSeq, rec.h.Seq-prevSeq-1, prevSeq+1, rec.h.Seq-1)
				case rec.h.Seq != prevSeq+1:
					problem("%s: record %d follows record %d (records removed or reordered)", name, rec.h.Seq, prevSeq)
				}
				if rec.h.Prev != prevHash {
					problem("%s: record %d does not chain to the record before it (removed, reordered or replaced)", name, rec.h.Seq)
				}
			}
			if last != nil && last.h.Kind == kindSeal {
				problem("%s: record %d comes after the segment's seal", name, rec.h.Seq)
			}
			switch rec.h.Kind {
			case kindSeal:
				if rec.h.Segment != name {
					problem("%s: record %d is the seal of %s (segments swapped or renamed)", name, rec.h.Seq, rec.h.Segment)
				}
				if rec.h.Last != prevHash {
					problem("%s: the seal (record %d) does not seal the records before it", name, rec.h.Seq)
				}
				sig, _ := hex.DecodeString(rec.h.Sig)
				if !ed25519.Verify(sealPub, sealMessage(rec.h.Segment, rec.h.Last, rec.h.PrunesSigned), sig) {
					problem("%s: the seal (record %d) has a bad signature", name, rec.h.Seq)
				} else if rec.h.PrunesSigned && !signedSince {
					signedFrom, signedSince = rec.h.Seq, true
				}
			case kindPrune:
				sig, _ := hex.DecodeString(rec.h.Sig)
				switch {
				case rec.h.Sig == "": // judged below, once it is known whether it may be
					unsigned = append(unsigned, unsignedPrune{name, rec.h.Seq})
					pruned = append(pruned, rec.h.Pruned...)
				case ed25519.Verify(sealPub, pruneMessage(&rec.h), sig):
					pruned = append(pruned, rec.h.Pruned...)
					for _, p := range rec.h.Pruned {
						prunedAt[p.Name] = rec.h.Time
					}
				default:
					problem("%s: the prune record (record %d) has a bad signature: it accounts for no removed segment", name, rec.h.Seq)
				}
			case kindInit:
				if rec.h.SealKey != hex.EncodeToString(sealPub) {
					problem("%s: record %d: seal.pub is not the seal key the archive was started with", name, rec.h.Seq)
				}
			}
			prevHash, prevSeq = rec.hash, rec.h.Seq
			last = rec
			rep.Records++
		}
		f.Close()
		if i < len(segs)-1 && (last == nil || last.h.Kind != kindSeal) {
			problem("%s: a closed segment without its seal (truncated, or its end removed)", name)
		}
	}
	// The chain starts at the first record ever written, or where a prune
	// record says the removed segments ended.
	if started && (firstSeq != 1 || firstPrev != zeroHash) {
		ok := false
		for _, p := range pruned {
			sum := sha256.Sum256(p.SealHeader)
			var seal header
			if hex.EncodeToString(sum[:]) != firstPrev || json.Unmarshal(p.SealHeader, &seal) != nil {
				continue
			}
			sig, _ := hex.DecodeString(seal.Sig)
			ok = seal.Kind == kindSeal && seal.Seq+1 == firstSeq && seal.Segment == p.Name &&
				ed25519.Verify(sealPub, sealMessage(seal.Segment, seal.Last, seal.PrunesSigned), sig)
			if ok && seal.PrunesSigned {
				// Pruned, that seal still comes before every record here.
				signedFrom, signedSince = seal.Seq, true
			}
		}
		if !ok {
			problem("%s: the records before record %d are missing, and no prune record accounts for them", segs[0], firstSeq)
		}
	}
	for _, u := range unsigned {
		if signedSince && u.seq > signedFrom {
			problem("%s: record %d is a prune record without the seal key's signature, after the seal (record %d) from which prune records are signed", u.segment, u.seq, signedFrom)
		} else {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: record %d is a prune record from before prune records were signed: it does not show that the holder of the seal key wrote it", u.segment, u.seq))
		}
	}
	rep.HeadSeq, rep.Head = prevSeq, prevHash
	if head != nil {
		var first []string
		rep.HeadFileSeq, rep.EndChecked = head.Seq, true
		switch {
		case head.Seq > rep.HeadSeq:
			rep.Missing = head.Seq - rep.HeadSeq
			msg := fmt.Sprintf("%s: the head file says the chain reached %s, the archive ends at %d", missingFromEnd(rep.Missing), head, rep.HeadSeq)
			if !slices.Contains(segs, head.Segment) {
				msg += fmt.Sprintf("; %s, which the head file names, is missing", head.Segment)
			}
			first = append(first, msg)
		case headHash == "" && started && head.Seq < firstSeq && o.HeadFile == "":
			first = append(first, prunedPastHead(rep.HeadFile, head, firstSeq))
		case headHash == "" && started && head.Seq < firstSeq:
			// A head file given apart may be an older copy, from before
			// a prune; whether the prune is accounted for is the chain's
			// start's check. But no retention lets a segment go within a
			// day of its last record, newer than the head file's record.
			if at, ok := prunedAt[head.Segment]; ok && at.Sub(head.t()) < shortestRetention {
				first = append(first, fmt.Sprintf("the head file names %s, but a prune record of %s removed %s: sooner than any retention allows (a day), so it was not the relay's prune",
					head, at.UTC().Format(time.RFC3339), head.Segment))
				break
			}
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("the head file names %s, which is no longer in the archive (pruned since): an older copy of the head file", head))
		case headHash == "":
			first = append(first, fmt.Sprintf("record %d, which the head file names (%s), is not in the chain", head.Seq, head))
		case headHash != head.Hash:
			first = append(first, fmt.Sprintf("%s: record %d is not the record the head file names (%s): the chain was rewritten from there on", headSeg, head.Seq, head))
		case headSeg != head.Segment:
			first = append(first, fmt.Sprintf("%s: record %d is here, but the head file says it is in %s (segments renamed)", headSeg, head.Seq, head.Segment))
		}
		// The end of the chain comes first: it is what the head file is for.
		rep.Problems = append(first, rep.Problems...)
	}
	if len(expect) > 0 {
		rep.EndChecked = true
	}
	for _, p := range expect {
		switch {
		case found[p.Seq]:
		case p.Seq > rep.HeadSeq:
			problem("record %d, seen earlier, is beyond the chain head (record %d): records were removed from the end", p.Seq, rep.HeadSeq)
		case started && p.Seq < firstSeq:
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("record %d, seen earlier, was pruned: it cannot be compared any more", p.Seq))
		default:
			problem("record %d, seen earlier, is not in the chain", p.Seq)
		}
	}
	if w != nil {
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "FAIL %s\n", p)
		}
		for _, p := range rep.Warnings {
			fmt.Fprintf(w, "WARN %s\n", p)
		}
		fmt.Fprintf(w, "%d segments, %d records, %d bytes; chain head record %d %s\n", rep.Segments, rep.Records, rep.Bytes, rep.HeadSeq, rep.Head)
		if rep.Pending > 0 {
			fmt.Fprintf(w, "%d bytes after the newest record: a write in progress (the relay is writing the archive)\n", rep.Pending)
		}
		switch {
		case rep.HeadFile != "" && rep.Missing == 0 && rep.HeadSeq > rep.HeadFileSeq:
			fmt.Fprintf(w, "The head file %s says the chain reached record %d; it goes on %d record(s) past it (written after the head file: the relay is writing, it crashed between the two writes, or this is an older copy of the head file).\n",
				rep.HeadFile, rep.HeadFileSeq, rep.HeadSeq-rep.HeadFileSeq)
		case rep.HeadFile != "" && rep.Missing == 0:
			fmt.Fprintf(w, "The head file %s says the chain reached record %d: it does, and ends there.\n", rep.HeadFile, rep.HeadFileSeq)
		case rep.EndChecked || headErr != nil: // a head file that does not count is a problem above
		case o.NoHead:
			fmt.Fprintf(w, "The end of the chain is not checked (no head file): records cut off the end would not show.\n")
		default:
			fmt.Fprintf(w, "The end of the chain is not checked: there is no head file at %s (and no --expect). Records cut off the end would not show.\n", HeadFile(dir))
		}
	}
	if len(rep.Problems) > 0 {
		return rep, fmt.Errorf("%w: %d problem(s), the first: %s", ErrDamaged, len(rep.Problems), rep.Problems[0])
	}
	return rep, nil
}

func tornTail(segment string, n int64, after uint64) string {
	return fmt.Sprintf("%s: %d bytes after record %d are not a whole record: a torn tail, left by a crash in the middle of a write (the relay's next start sets it aside) or by cutting the archive inside a record", segment, n, after)
}

func short(hash string) string {
	if len(hash) > 16 {
		return hash[:16] + "…"
	}
	return hash
}
