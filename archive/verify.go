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

// Report is what VerifyWith found.
type Report struct {
	// Node is the relay whose chain this is, as its records name it (""
	// when they name none: see NodeName).
	Node     string
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
	// The seals cannot show that records after the last seal (the segment
	// being written) were removed, or that someone with the seal key
	// rewrote the chain; a head kept from earlier can.
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

// errDamaged is returned when verification found a problem.
var errDamaged = errors.New("the archive failed verification")

// ChainPoint is a record an earlier look at the archive saw: the chain head
// of an export's manifest, or of an earlier verify.
type ChainPoint struct {
	Seq  uint64
	Hash string
}

// verify is VerifyWith comparing the chain's end with the head file next to
// the archive, when there is one.
func verify(dir string, w io.Writer) (*Report, error) {
	return VerifyWith(dir, w, VerifyOptions{})
}

// VerifyWith checks every record's hash, the chain from each record to the
// one before, the sequence numbers, and the seal of every closed segment,
// and compares the chain with what o names. It needs no private key: only
// the archive folder and its seal.pub. Each problem names the segment and
// the record.
//
// Prune records are signed with the seal key. An unsigned one passes with
// a warning only while no seal before it says prune records are signed
// (it was written before they were); after such a seal it is a problem.
//
// The head file is read before the segments: the archive only grows after
// it, so a relay writing meanwhile cannot make the chain look short.
func VerifyWith(dir string, w io.Writer, o VerifyOptions) (*Report, error) {
	v := &verifier{dir: dir, o: o, rep: &Report{}, want: map[uint64]string{}, found: map[uint64]bool{}, prunedAt: map[string]time.Time{}}
	slots, err := v.readHeadFile()
	if err != nil {
		return nil, err
	}
	for _, p := range o.Expect {
		v.want[p.Seq] = p.Hash
	}
	if v.sealPub, err = readSealPub(dir); err != nil {
		return nil, err
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if len(segs) == 0 && slots == nil {
		return nil, fmt.Errorf("archive: no segments in %s", dir)
	}
	if v.headErr != nil {
		v.problem("%v", v.headErr)
	}
	v.pickHead(slots)
	for i := range segs {
		if err := v.segment(segs, i); err != nil {
			return nil, err
		}
	}
	v.checkStart(segs)
	v.judgeUnsignedPrunes()
	v.rep.HeadSeq, v.rep.Head = v.prevSeq, v.prevHash
	v.compareHead(segs)
	v.checkExpected()
	if w != nil {
		v.print(w)
	}
	rep := v.rep
	if len(rep.Problems) > 0 {
		return rep, fmt.Errorf("%w: %d problem(s), the first: %s", errDamaged, len(rep.Problems), rep.Problems[0])
	}
	return rep, nil
}

// verifier is one run of VerifyWith: the report so far, and what it has
// seen of the chain.
type verifier struct {
	dir     string
	o       VerifyOptions
	rep     *Report
	sealPub ed25519.PublicKey
	head    *headFile // the head file's signed head; nil: none
	headErr error     // why the head file does not count
	want    map[uint64]string
	found   map[uint64]bool

	headSeg, headHash string               // where the record the head file names is, and its hash
	prunedAt          map[string]time.Time // segment -> when a signed prune record removed it
	prevHash          string
	prevSeq           uint64
	firstPrev         string
	firstSeq          uint64
	pruned            []prunedSegment
	started           bool
	// the first seal that says prune records are signed
	signedFrom  uint64
	signedSince bool
	unsigned    []unsignedPrune
}

func (v *verifier) problem(format string, args ...any) {
	v.rep.Problems = append(v.rep.Problems, fmt.Sprintf(format, args...))
}

func (v *verifier) warn(format string, args ...any) {
	v.rep.Warnings = append(v.rep.Warnings, fmt.Sprintf(format, args...))
}

// readHeadFile reads the head file the options name, or the one next to
// the archive when there is one; nil slots: none to compare with.
func (v *verifier) readHeadFile() (headSlots, error) {
	if v.o.NoHead {
		return nil, nil
	}
	path := v.o.HeadFile
	if path == "" {
		path = HeadFile(v.dir)
	}
	slots, err := readHead(path)
	switch {
	case err == nil:
		v.rep.HeadFile = path
	case errors.Is(err, os.ErrNotExist) && v.o.HeadFile == "":
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("archive: head file: %w", err)
	default:
		v.headErr = err
	}
	return slots, nil
}

func readSealPub(dir string) (ed25519.PublicKey, error) {
	pubHex, err := os.ReadFile(filepath.Join(dir, "seal.pub"))
	if err != nil {
		return nil, fmt.Errorf("archive: seal.pub: %w", err)
	}
	pb, err := hex.DecodeString(strings.TrimSpace(string(pubHex)))
	if err != nil || len(pb) != ed25519.PublicKeySize {
		return nil, errors.New("archive: seal.pub is not a seal key")
	}
	return ed25519.PublicKey(pb), nil
}

// pickHead takes the head file's newest head signed with the seal key.
func (v *verifier) pickHead(slots headSlots) {
	if slots == nil {
		return
	}
	var forged int
	v.head, _, forged = slots.newest(v.sealPub)
	switch {
	case v.head == nil:
		v.problem("the head file %s is not signed with this archive's seal key (seal.pub): forged, or another archive's", v.rep.HeadFile)
		v.rep.HeadFile, v.headErr = "", errors.New("not signed")
	case forged > 0:
		v.warn("the head file %s holds a head not signed with this archive's seal key beside the signed one, which is used (forged, or read while the relay overwrote it)", v.rep.HeadFile)
	}
}

// segment checks the records of segs[i], the chain through them, and that
// a closed segment ends in its seal.
func (v *verifier) segment(segs []string, i int) error {
	name := segs[i]
	if i > 0 && segNumber(name) != segNumber(segs[i-1])+1 {
		v.problem("%s: segment %s is missing before it (removed without a prune record)", name, segName(segNumber(segs[i-1])+1))
	}
	sr, f, err := openSegment(filepath.Join(v.dir, name), false)
	if err != nil {
		return err
	}
	defer f.Close()
	v.rep.Segments++
	v.rep.Bytes += sr.size
	var last *storedRecord
	for {
		rec, err := sr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errIncomplete) {
			if err := v.incomplete(name, i == len(segs)-1, sr); err != nil {
				return err
			}
			break
		}
		if err != nil {
			v.problem("%v", err)
			if rec == nil {
				break // the framing is lost; nothing further in this segment can be read
			}
		}
		v.record(name, rec, last)
		last = rec
	}
	if i < len(segs)-1 && (last == nil || last.h.Kind != kindSeal) {
		v.problem("%s: a closed segment without its seal (truncated, or its end removed)", name)
	}
	return nil
}

// incomplete judges bytes after the last complete record of a segment.
func (v *verifier) incomplete(name string, newest bool, sr *segmentReader) error {
	if !newest {
		v.problem("%s: truncated: %d bytes after record %d are not a whole record", name, sr.size-sr.off, v.prevSeq)
		return nil
	}
	// A torn tail has no complete record after it; one that has is a
	// damaged record, and what follows it was acknowledged.
	at, found, err := recordAfter(filepath.Join(v.dir, name), sr.off, sr.size)
	if err != nil {
		return err
	}
	switch {
	case found:
		v.problem("%v", damagedLength(name, sr.off, at))
	case writerActive(v.dir):
		v.rep.Pending = sr.size - sr.off
	case v.o.AllowTornTail:
		v.rep.Torn = sr.size - sr.off
		v.rep.Warnings = append(v.rep.Warnings, tornTail(name, v.rep.Torn, v.prevSeq))
	default:
		v.rep.Torn = sr.size - sr.off
		v.problem("%s (--allow-torn-tail accepts it)", tornTail(name, v.rep.Torn, v.prevSeq))
	}
	return nil
}

// record checks one record: against the head file and the points
// expected, its place in the chain, and what its kind says.
func (v *verifier) record(name string, rec, last *storedRecord) {
	if v.head != nil && rec.h.Seq == v.head.Seq {
		v.headSeg, v.headHash = name, rec.hash
	}
	if h, ok := v.want[rec.h.Seq]; ok {
		v.found[rec.h.Seq] = true
		if rec.hash != h {
			v.problem("%s: record %d is not the record seen earlier (%s): the chain was rewritten from there on", name, rec.h.Seq, short(h))
		}
	}
	if !v.started {
		v.firstPrev, v.firstSeq, v.started = rec.h.Prev, rec.h.Seq, true
	} else {
		switch {
		case rec.h.Seq == v.prevSeq+2:
			v.problem("%s: record %d follows record %d: record %d is missing (removed, or records reordered)", name, rec.h.Seq, v.prevSeq, v.prevSeq+1)
		case rec.h.Seq > v.prevSeq+2:
			v.problem("%s: record %d follows record %d: %d records are missing, %d to %d (removed, or records reordered)",
				name, rec.h.Seq, v.prevSeq, rec.h.Seq-v.prevSeq-1, v.prevSeq+1, rec.h.Seq-1)
		case rec.h.Seq != v.prevSeq+1:
			v.problem("%s: record %d follows record %d (records removed or reordered)", name, rec.h.Seq, v.prevSeq)
		}
		if rec.h.Prev != v.prevHash {
			v.problem("%s: record %d does not chain to the record before it (removed, reordered or replaced)", name, rec.h.Seq)
		}
	}
	if last != nil && last.h.Kind == kindSeal {
		v.problem("%s: record %d comes after the segment's seal", name, rec.h.Seq)
	}
	v.checkNode(name, rec)
	switch rec.h.Kind {
	case kindSeal:
		v.seal(name, rec)
	case kindPrune:
		v.prune(name, rec)
	case kindInit:
		if rec.h.SealKey != hex.EncodeToString(v.sealPub) {
			v.problem("%s: record %d: seal.pub is not the seal key the archive was started with", name, rec.h.Seq)
		}
	}
	v.prevHash, v.prevSeq = rec.hash, rec.h.Seq
	v.rep.Records++
}

// checkNode: a chain names no node, or takes one once and keeps it; a
// record naming another node, or none after a named one, is another
// relay's record inside this chain.
func (v *verifier) checkNode(name string, rec *storedRecord) {
	switch n := rec.h.Node; {
	case n == v.rep.Node:
	case v.rep.Node == "":
		v.rep.Node = n
	case n == "":
		v.problem("%s: record %d names no node, the records before it node %q: records of two relays in one chain", name, rec.h.Seq, v.rep.Node)
	default:
		v.problem("%s: record %d names node %q, the records before it node %q: records of two relays in one chain", name, rec.h.Seq, n, v.rep.Node)
	}
}

func (v *verifier) seal(name string, rec *storedRecord) {
	if rec.h.Segment != name {
		v.problem("%s: record %d is the seal of %s (segments swapped or renamed)", name, rec.h.Seq, rec.h.Segment)
	}
	if rec.h.Last != v.prevHash {
		v.problem("%s: the seal (record %d) does not seal the records before it", name, rec.h.Seq)
	}
	sig, _ := hex.DecodeString(rec.h.Sig)
	if !ed25519.Verify(v.sealPub, sealMessage(rec.h.Segment, rec.h.Last, rec.h.PrunesSigned), sig) {
		v.problem("%s: the seal (record %d) has a bad signature", name, rec.h.Seq)
	} else if rec.h.PrunesSigned && !v.signedSince {
		v.signedFrom, v.signedSince = rec.h.Seq, true
	}
}

func (v *verifier) prune(name string, rec *storedRecord) {
	sig, _ := hex.DecodeString(rec.h.Sig)
	switch {
	case rec.h.Sig == "": // judged once it is known whether it may be
		v.unsigned = append(v.unsigned, unsignedPrune{name, rec.h.Seq})
		v.pruned = append(v.pruned, rec.h.Pruned...)
	case ed25519.Verify(v.sealPub, pruneMessage(&rec.h), sig):
		v.pruned = append(v.pruned, rec.h.Pruned...)
		for _, p := range rec.h.Pruned {
			v.prunedAt[p.Name] = rec.h.Time
		}
	default:
		v.problem("%s: the prune record (record %d) has a bad signature: it accounts for no removed segment", name, rec.h.Seq)
	}
}

// checkStart: the chain starts at the first record ever written, or where
// a prune record says the removed segments ended.
func (v *verifier) checkStart(segs []string) {
	if !v.started || (v.firstSeq == 1 && v.firstPrev == zeroHash) {
		return
	}
	ok := false
	for _, p := range v.pruned {
		sum := sha256.Sum256(p.SealHeader)
		var seal header
		if hex.EncodeToString(sum[:]) != v.firstPrev || json.Unmarshal(p.SealHeader, &seal) != nil {
			continue
		}
		sig, _ := hex.DecodeString(seal.Sig)
		ok = seal.Kind == kindSeal && seal.Seq+1 == v.firstSeq && seal.Segment == p.Name &&
			ed25519.Verify(v.sealPub, sealMessage(seal.Segment, seal.Last, seal.PrunesSigned), sig)
		if ok && seal.PrunesSigned {
			// Pruned, that seal still comes before every record here.
			v.signedFrom, v.signedSince = seal.Seq, true
		}
	}
	if !ok {
		v.problem("%s: the records before record %d are missing, and no prune record accounts for them", segs[0], v.firstSeq)
	}
}

// judgeUnsignedPrunes: an unsigned prune record is a problem after a seal
// that says prune records are signed, a warning before.
func (v *verifier) judgeUnsignedPrunes() {
	for _, u := range v.unsigned {
		if v.signedSince && u.seq > v.signedFrom {
			v.problem("%s: record %d is a prune record without the seal key's signature, after the seal (record %d) from which prune records are signed", u.segment, u.seq, v.signedFrom)
		} else {
			v.warn("%s: record %d is a prune record from before prune records were signed: it does not show that the holder of the seal key wrote it", u.segment, u.seq)
		}
	}
}

// compareHead compares the chain's end with the head file's. What it finds
// comes first among the problems: it is what the head file is for.
func (v *verifier) compareHead(segs []string) {
	head, rep := v.head, v.rep
	if head == nil {
		return
	}
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
	case v.headHash == "" && v.started && head.Seq < v.firstSeq && v.o.HeadFile == "":
		first = append(first, prunedPastHead(rep.HeadFile, head, v.firstSeq))
	case v.headHash == "" && v.started && head.Seq < v.firstSeq:
		// A head file given apart may be an older copy, from before
		// a prune; whether the prune is accounted for is the chain's
		// start's check. But no retention lets a segment go within a
		// day of its last record, newer than the head file's record.
		if at, ok := v.prunedAt[head.Segment]; ok && at.Sub(head.t()) < shortestRetention {
			first = append(first, fmt.Sprintf("the head file names %s, but a prune record of %s removed %s: sooner than any retention allows (a day), so it was not the relay's prune",
				head, at.UTC().Format(time.RFC3339), head.Segment))
			break
		}
		v.warn("the head file names %s, which is no longer in the archive (pruned since): an older copy of the head file", head)
	case v.headHash == "":
		first = append(first, fmt.Sprintf("record %d, which the head file names (%s), is not in the chain", head.Seq, head))
	case v.headHash != head.Hash:
		first = append(first, fmt.Sprintf("%s: record %d is not the record the head file names (%s): the chain was rewritten from there on", v.headSeg, head.Seq, head))
	case v.headSeg != head.Segment:
		first = append(first, fmt.Sprintf("%s: record %d is here, but the head file says it is in %s (segments renamed)", v.headSeg, head.Seq, head.Segment))
	}
	rep.Problems = append(first, rep.Problems...)
}

// checkExpected: every chain point seen earlier is still in the chain.
func (v *verifier) checkExpected() {
	if len(v.o.Expect) > 0 {
		v.rep.EndChecked = true
	}
	for _, p := range v.o.Expect {
		switch {
		case v.found[p.Seq]:
		case p.Seq > v.rep.HeadSeq:
			v.problem("record %d, seen earlier, is beyond the chain head (record %d): records were removed from the end", p.Seq, v.rep.HeadSeq)
		case v.started && p.Seq < v.firstSeq:
			v.warn("record %d, seen earlier, was pruned: it cannot be compared any more", p.Seq)
		default:
			v.problem("record %d, seen earlier, is not in the chain", p.Seq)
		}
	}
}

// print writes the report for a reader: problems, warnings, what was
// checked and what could not be.
func (v *verifier) print(w io.Writer) {
	rep := v.rep
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "FAIL %s\n", p)
	}
	for _, p := range rep.Warnings {
		fmt.Fprintf(w, "WARN %s\n", p)
	}
	if rep.Node != "" {
		fmt.Fprintf(w, "The chain of node %s.\n", rep.Node)
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
	case rep.EndChecked || v.headErr != nil: // a head file that does not count is a problem above
	case v.o.NoHead:
		fmt.Fprintf(w, "The end of the chain is not checked (no head file): records cut off the end would not show.\n")
	default:
		fmt.Fprintf(w, "The end of the chain is not checked: there is no head file at %s (and no --expect). Records cut off the end would not show.\n", HeadFile(v.dir))
	}
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
