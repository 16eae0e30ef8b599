package archive

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/internal/fsutil"
)

// The head file says how far the chain had reached when it was written:
// the newest durable record's sequence number and hash, the segment it is
// in and its time, signed with the seal key. It lives outside the archive
// folder (HeadFile), so that whoever can change only the folder (a copy, a
// backup put back, a sync tool, a filesystem that lost its last writes)
// cannot cut records off the end unnoticed: verify and the relay's start
// compare the chain with it. It says "the chain reached at least this
// far", nothing about what came after it.
//
// It is written after every fsynced batch, only after the archive's fsync,
// so it is never ahead of the durable archive, and before the batch's
// records are acknowledged, so a record the relay acknowledged is in it
// even when the relay is killed right after. Its own fsync follows in the
// background, within headSyncEvery: a power cut in between leaves it
// behind the archive, like a crash between the two writes.
//
// The file is text: two slots of one filesystem block each, a JSON object
// padded with spaces to a line of headSlot bytes:
//
//	{"sealpost_archive_head":1,"seq":1042,"hash":"…","segment":"seg-00000012.log",
//	 "time":"2026-11-22T09:00:00.123Z","sig":"…"}
//
// sig is the seal key's Ed25519 signature over headMessage. Each write
// overwrites, in place, the slot that does not hold the newest head, so a
// crash leaves the other slot whole, and readers take the newest slot that
// is signed. (Writing a new file and renaming it over the old one costs a
// journal commit, several milliseconds, on every batch; an overwrite in
// place costs a page write.) A file of one such line, however padded,
// reads the same.
type headFile struct {
	Format  int    `json:"sealpost_archive_head"`
	Seq     uint64 `json:"seq"`
	Hash    string `json:"hash"`
	Segment string `json:"segment"`
	Time    string `json:"time"` // the record's time, RFC 3339
	Sig     string `json:"sig"`
}

const (
	headFormat = 1
	headSlot   = 4096 // a filesystem block: writing one slot leaves the other's block alone
)

// HeadFile is where the head file of the archive in dir is kept: next to
// the folder, not in it (data_dir/archive-head for data_dir/archive).
func HeadFile(dir string) string { return filepath.Clean(dir) + "-head" }

func headMessage(h *headFile) []byte {
	return fmt.Appendf(nil, "sealpost-archive-head-v1\n%d\n%s\n%s\n%s\n", h.Seq, h.Hash, h.Segment, h.Time)
}

func (h *headFile) signedBy(pub ed25519.PublicKey) bool {
	sig, err := hex.DecodeString(h.Sig)
	return err == nil && ed25519.Verify(pub, headMessage(h), sig)
}

// t is the head record's time (zero when the file says none that parses).
func (h *headFile) t() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, h.Time)
	return t
}

// shortestRetention is the shortest archive.retention the configuration
// takes: no prune of the relay's removes a segment sooner after its last
// record.
const shortestRetention = 24 * time.Hour

func (h *headFile) String() string {
	return fmt.Sprintf("record %d (hash %s, in %s, %s)", h.Seq, short(h.Hash), h.Segment, h.Time)
}

// headSlots are the heads a head file holds, in file order; a slot that
// does not hold one (never written, or torn by a crash) is nil.
type headSlots []*headFile

// readHead reads a head file; a missing one is os.ErrNotExist. A file of
// two slots is read by their places, so that the slot numbers are the
// writer's; any other file (a head given apart) line by line.
func readHead(path string) (headSlots, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lines [][]byte
	if len(b) == 2*headSlot {
		lines = [][]byte{b[:headSlot], b[headSlot:]}
	} else {
		for line := range bytes.Lines(b) {
			if len(bytes.TrimSpace(line)) > 0 {
				lines = append(lines, line)
			}
		}
	}
	var slots headSlots
	var any bool
	for _, line := range lines {
		var h headFile
		if json.Unmarshal(bytes.TrimSpace(line), &h) != nil || h.Format != headFormat || len(h.Hash) != 64 || h.Seq == 0 {
			slots = append(slots, nil)
			continue
		}
		slots, any = append(slots, &h), true
	}
	if !any {
		return nil, fmt.Errorf("%s is not a head file of a sealpost archive", path)
	}
	return slots, nil
}

// newest is the newest head signed with pub, and the number of slots that
// hold a head not signed with it. A crash does not make one, but a slot
// read while the relay overwrote it can look so: with a signed head beside
// it, it is not used, and only warned about.
func (s headSlots) newest(pub ed25519.PublicKey) (newest *headFile, slot, forged int) {
	for i, h := range s {
		switch {
		case h == nil:
		case !h.signedBy(pub):
			forged++
		case newest == nil || h.Seq > newest.Seq:
			newest, slot = h, i
		}
	}
	return newest, slot, forged
}

// highest is the head with the highest number, signed or not.
func (s headSlots) highest() *headFile {
	var top *headFile
	for _, h := range s {
		if h != nil && (top == nil || h.Seq > top.Seq) {
			top = h
		}
	}
	return top
}

func headLine(h *headFile) ([]byte, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	if len(b) >= headSlot {
		return nil, fmt.Errorf("a head of %d bytes does not fit its slot", len(b))
	}
	line := bytes.Repeat([]byte{' '}, headSlot)
	copy(line, b)
	line[headSlot-1] = '\n'
	return line, nil
}

func signHead(key ed25519.PrivateKey, seq uint64, hash, segment string, t time.Time) *headFile {
	h := &headFile{Format: headFormat, Seq: seq, Hash: hash, Segment: segment, Time: t.UTC().Format(time.RFC3339Nano)}
	h.Sig = hex.EncodeToString(ed25519.Sign(key, headMessage(h)))
	return h
}

// replaceHead makes a new head file at path holding h in its first slot,
// durably and as one step: a crash leaves the old file or the new one.
func replaceHead(path string, h *headFile) error {
	line, err := headLine(h)
	if err != nil {
		return err
	}
	empty := bytes.Repeat([]byte{' '}, headSlot)
	empty[headSlot-1] = '\n'
	// One writer holds the archive's lock, so the fixed temporary name
	// WriteFileAtomic uses is safe.
	return fsutil.WriteFileAtomic(path, append(line, empty...), 0o600)
}

// writeHeadSlot overwrites one slot of the head file at path in place,
// leaving the fsync to syncHeads. It reports os.ErrNotExist when there is
// no head file of two slots.
func writeHeadSlot(path string, slot int, h *headFile) error {
	line, err := headLine(h)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() != 2*headSlot {
		return os.ErrNotExist
	}
	_, err = f.WriteAt(line, int64(slot)*headSlot)
	return err
}

// saveHead writes the head file for the newest durable record into the
// slot that does not hold the newest head, or as a new file (durable at
// once) when there is none of two slots, or when durable is asked for. A
// failure does not undo records that are durable: it is logged, and the
// next batch tries again; meanwhile the head file is behind, which is what
// a crash leaves too.
func (a *Archive) saveHead(durable bool) error {
	h := signHead(a.sealKey, a.seq, a.last, a.headSeg, a.headTime)
	next, err := 1-a.headSlot, os.ErrNotExist
	if !durable {
		err = writeHeadSlot(a.headPath, next, h)
	}
	if errors.Is(err, os.ErrNotExist) {
		next, err = 0, replaceHead(a.headPath, h)
	} else if err == nil {
		select {
		case a.headSync <- struct{}{}:
		default: // a sync is asked for already, and sees this write too
		}
	}
	if err == nil {
		a.headSlot = next
	} else {
		err = fmt.Errorf("archive: head file: %w", err)
	}
	switch {
	case err != nil && a.headErr == nil:
		a.log.Error("archive: cannot write the head file; records are still written, but records cut off the end after the head file's record would not show until it is written again",
			"path", a.headPath, "err", err)
	case err == nil && a.headErr != nil:
		a.log.Info("archive: the head file is written again", "path", a.headPath, "seq", a.seq)
	}
	a.headErr = err
	return err
}

// syncHeads makes the head file's writes durable, a moment after each,
// off the path of the records' acknowledgement; it returns once headSync
// is closed and what was written before is durable. It waits for a disk
// flush of its own at most every headSyncEvery: flushes are what make the
// archive's fsyncs slow, and a head file a few batches behind on disk is
// what a crash between two writes leaves anyway.
func (a *Archive) syncHeads() {
	defer close(a.headSynced)
	var failing bool
	for range a.headSync {
		err := syncFile(a.headPath)
		switch {
		case err != nil && !failing:
			a.log.Error("archive: cannot fsync the head file; a power cut could leave it behind the archive", "path", a.headPath, "err", err)
		case err == nil && failing:
			a.log.Info("archive: the head file is fsynced again", "path", a.headPath)
		}
		failing = err != nil
		t := time.NewTimer(headSyncEvery)
		select {
		case <-t.C:
		case <-a.stopped: // Close waits for the last one: no pause
		}
		t.Stop()
	}
}

const headSyncEvery = 50 * time.Millisecond

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return fdatasync(f)
}

// errMissingAtOpen stops Open when the head file says the chain reached
// further than the archive does, or the record it names is not the one
// there: starting would write a new head file over the evidence.
var errMissingAtOpen = errors.New("records are missing from the archive, nothing more is written to it until an admin looks (sealpost archive verify)")

// checkHeadAtOpen compares the head file with the chain as Open found it
// (before anything is written): first and end are the first and newest
// complete records' numbers (end 0: none), found the hash and segment of
// the record the head file names, when it is there.
func (a *Archive) checkHeadAtOpen(h *headFile, first, end uint64, foundHash, foundSeg string) error {
	restored := fmt.Sprintf("if an older copy of the archive was put back on purpose, move %s away (keep it: it shows what was lost) and start again", a.headPath)
	switch {
	case h.Seq > end:
		return fmt.Errorf("%w: %s: the head file %s says the chain reached %s, the archive ends at %d; %s",
			errMissingAtOpen, missingFromEnd(h.Seq-end), a.headPath, h, end, restored)
	case h.Seq < first:
		return fmt.Errorf("%w: %s", errMissingAtOpen, prunedPastHead(a.headPath, h, first))
	case foundHash == "":
		return fmt.Errorf("%w: record %d, which the head file %s names, is not in the archive; %s", errMissingAtOpen, h.Seq, a.headPath, restored)
	case foundHash != h.Hash || foundSeg != h.Segment:
		return fmt.Errorf("%w: record %d in %s is not the record the head file %s names (%s): the chain was rewritten from there on; %s",
			errMissingAtOpen, h.Seq, foundSeg, a.headPath, h, restored)
	}
	return nil
}

// prunedPastHead: the relay's own head file is past every prune record
// before a segment goes (Prune), so a record of it that was pruned means
// segments were removed under a prune record written after the head file
// was, by someone with the seal key (which is in the archive folder), or
// that an older head file was put in its place.
func prunedPastHead(path string, h *headFile, first uint64) string {
	return fmt.Sprintf("the head file %s names %s, but the archive starts at record %d: segments were removed under a prune record written after the head file (which Prune never does), or an older head file was put in its place",
		path, h, first)
}

func missingFromEnd(n uint64) string {
	if n == 1 {
		return "1 record is missing from the end"
	}
	return fmt.Sprintf("%d records are missing from the end", n)
}

// writerActive says whether a process holds the archive's write lock (a
// running relay): bytes after the newest record are then a write in
// progress, not a torn tail. The lock is only tried, never kept, so
// verify does not stop the relay from starting.
func writerActive(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
