package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // subjects in any charset
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/record"
)

// Options open an archive for writing.
type Options struct {
	Dir       string             // data_dir/archive
	PublicKey openpgp.EntityList // records are encrypted to these keys; their private halves stay offline
	Now       func() time.Time
	Logger    *slog.Logger
	// SegmentBytes closes a segment (with a seal) once it is this large.
	SegmentBytes int64
	// SealEvery closes a segment once its first record is this old
	// (default a day): records wait at most that long for a seal, which
	// makes changing them without the seal key show.
	SealEvery time.Duration
	// HeadFile is where the head file is kept (default HeadFile(Dir)):
	// outside Dir, so that the folder alone cannot be cut back unnoticed.
	HeadFile string
}

// Archive is the writing end of the clinical record. One process writes it
// (the relay); verify and export read it at the same time.
type Archive struct {
	opts    Options
	dir     string
	lock    *os.File
	sealKey ed25519.PrivateKey
	hashKey []byte
	log     *slog.Logger

	reqs    chan *appendReq
	stopped chan struct{}
	// sendMu orders sends on reqs before Close closes it: senders hold it
	// shared from their check of closed until their request is in reqs.
	sendMu sync.RWMutex
	closed bool // guarded by sendMu

	mu          sync.Mutex // guards what the writer publishes
	lastConsent int64
	headSeq     uint64
	headHash    string

	headPath string
	headErr  error // the last head file write's, owned by the writer
	headSlot int   // the head file's slot holding the newest head
	// headSync asks syncHeads to fsync the head file; headSynced is
	// closed once it has stopped
	headSync   chan struct{}
	headSynced chan struct{}
	headSeg    string    // the segment of the newest durable record
	headTime   time.Time // and its time

	keyMu sync.Mutex
	rkey  *recordKeyEpoch

	ingestMu sync.Mutex // one inbound record at a time: check, write, remember
	ingested map[string]bool
	ingestAt map[string]IngestSource // account+"\x00"+folder -> newest position

	// writer state, owned by the writer goroutine
	bw       *bufio.Writer // reused for every batch
	seg      *os.File
	segName  string
	segSize  int64
	segSince time.Time // when the segment got its first record
	seq      uint64
	last     string
}

type appendReq struct {
	h       header
	payload *payload
	op      func() error // instead of a record: run in the writer (prune)
	// sign, when set, signs the header once its place in the chain is known
	sign func(*header)
	done chan error
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("archive: closed")

const defaultSegmentBytes = 64 << 20

const defaultSealEvery = 24 * time.Hour

// Open opens (or starts) the archive in opts.Dir. A torn tail a crash left
// is set aside into Dir/torn and recorded in the chain; every complete
// record is kept. A record that is there but damaged stops Open, and so do
// bytes that are not a whole record with a complete record after them (a
// damaged length, not a crash): nothing is written after them until an
// admin looks (sealpost archive verify). The seal and address-hash keys are
// made with a new archive only: missing from one that holds records, they
// stop Open (ErrKeyMissing).
//
// The head file (HeadFile) must not say the chain reached further than it
// does, or name a record that is not the one there: that stops Open too,
// before anything is written over it. Without one (an archive from before
// head files), Open writes it.
func Open(opts Options) (*Archive, error) {
	if len(opts.PublicKey) == 0 {
		return nil, errors.New("archive: no public key to encrypt to")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = defaultSegmentBytes
	}
	if opts.SealEvery <= 0 {
		opts.SealEvery = defaultSealEvery
	}
	if opts.HeadFile == "" {
		opts.HeadFile = HeadFile(opts.Dir)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	a := &Archive{opts: opts, dir: opts.Dir, lock: lock, log: opts.Logger, reqs: make(chan *appendReq, 256), stopped: make(chan struct{}),
		ingested: map[string]bool{}, ingestAt: map[string]IngestSource{}, headPath: opts.HeadFile,
		headSync: make(chan struct{}, 1), headSynced: make(chan struct{})}
	fail := func(err error) (*Archive, error) {
		if a.seg != nil {
			a.seg.Close()
		}
		lock.Close()
		return nil, err
	}
	// The keys are made with the archive, never later: a new seal key
	// would not verify the chain, a new address-hash key would not find
	// the records of clients already in it (holds, export --client).
	fresh, err := isNewArchive(opts.Dir)
	if err != nil {
		return fail(err)
	}
	slots, err := readHead(a.headPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if !fresh {
			a.log.Warn("archive: no head file yet (an archive from before head files, or the file was removed): records cut off the end before this start could not show; it is written now",
				"path", a.headPath)
		}
	case err != nil:
		return fail(fmt.Errorf("%w: %w; if it is not this archive's, move it away", errMissingAtOpen, err))
	case fresh:
		// Checked before a new seal key is made: every record the head
		// file counts is gone, with the keys perhaps.
		return fail(fmt.Errorf("%w: %s holds no record, but the head file %s says the chain reached %s; if a new archive is wanted, move %s away (keep it) and start again",
			errMissingAtOpen, opts.Dir, a.headPath, slots.highest(), a.headPath))
	}
	if a.sealKey, err = loadOrMakeSealKey(opts.Dir, fresh); err != nil {
		return fail(err)
	}
	if a.hashKey, err = loadOrMakeHashKey(opts.Dir, fresh); err != nil {
		return fail(err)
	}
	var head *headFile
	if slots != nil {
		var forged int
		head, a.headSlot, forged = slots.newest(a.sealKey.Public().(ed25519.PublicKey))
		if head == nil {
			return fail(fmt.Errorf("%w: the head file %s is not signed with this archive's seal key (forged, or another archive's); if it is not this archive's, move it away",
				errMissingAtOpen, a.headPath))
		}
		if forged > 0 {
			a.log.Warn("archive: the head file holds a head not signed with this archive's seal key (forged); the signed one is used", "path", a.headPath)
		}
	}
	if err := a.recover(head); err != nil {
		return fail(err)
	}
	// Also when recovering wrote nothing: an archive from before head
	// files gets one, and one left behind by a crash catches up.
	if err := a.saveHead(true); err != nil {
		return fail(err)
	}
	a.headSeq, a.headHash = a.seq, a.last
	go a.syncHeads()
	go a.writer()
	return a, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("archive %s is in use by another sealpost process (the running relay writes it)", dir)
	}
	return f, nil
}

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
	// The highest consent id anywhere, so the serve loop knows what to copy.
	var (
		first, end          uint64
		headHash, headInSeg string
	)
	for _, s := range segs {
		if err := scanHeaders(filepath.Join(a.dir, s), func(h *header, raw []byte) {
			if first == 0 {
				first = h.Seq
			}
			end = max(end, h.Seq)
			if head != nil && h.Seq == head.Seq {
				sum := sha256.Sum256(raw)
				headHash, headInSeg = hex.EncodeToString(sum[:]), s
			}
			if h.Kind == kindConsent && h.Consent > a.lastConsent {
				a.lastConsent = h.Consent
			}
			if h.Kind == kindPrune && h.Carry != nil {
				// What the pruned records told; later records go further.
				a.lastConsent = max(a.lastConsent, h.Carry.Consent)
				for _, s := range h.Carry.Ingest {
					a.advance(s)
				}
			}
			if h.Dedup != "" {
				a.rememberIngest(h.Dedup, h.Src)
			}
		}); err != nil && !errors.Is(err, errIncomplete) {
			return fmt.Errorf("archive: %w", err)
		}
	}
	// Damage found below is named as such first; the head file is
	// compared before anything is written.
	checkHead := func() error {
		if head == nil {
			return nil
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
	var last *storedRecord
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
		last = rec
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
		return a.newSegment(segNumber(name) + 1)
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

func (a *Archive) startChain() error {
	if err := a.newSegmentFile(1); err != nil {
		return err
	}
	return a.writeInit()
}

// writeInit writes the chain's first record, naming its keys.
func (a *Archive) writeInit() error {
	a.seq, a.last = 0, zeroHash
	var fprs []string
	for _, e := range a.opts.PublicKey {
		fprs = append(fprs, strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint)))
	}
	h := header{Kind: kindInit, SealKey: hex.EncodeToString(a.sealKey.Public().(ed25519.PublicKey)), ArchKey: fprs}
	return a.appendDirect(&h, nil)
}

func (a *Archive) newSegmentFile(n int) error {
	name := segName(n)
	// O_APPEND: after a failed write is cut back, the next one lands at the
	// new end, not at a stale offset past it.
	f, err := os.OpenFile(filepath.Join(a.dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if err := syncDir(a.dir); err != nil {
		f.Close()
		return err
	}
	a.seg, a.segName, a.segSize = f, name, 0
	return nil
}

func (a *Archive) newSegment(n int) error { return a.newSegmentFile(n) }

func (a *Archive) openForAppend(name string, size int64) error {
	f, err := os.OpenFile(filepath.Join(a.dir, name), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	a.seg, a.segName, a.segSize = f, name, size
	if size > 0 {
		a.segSince = a.opts.Now() // at the latest: a day from this start
	}
	return nil
}

// appendDirect writes one record at once (used before the writer runs).
func (a *Archive) appendDirect(h *header, p *payload) error {
	return a.appendBatch([]*appendReq{{h: *h, payload: p}})
}

// appendBatch writes records in order and makes them durable with one
// fsync. On failure the segment is cut back to where it was: nothing is
// half-written, and the chain goes on from the last durable record.
func (a *Archive) appendBatch(batch []*appendReq) error {
	seq, last := a.seq, a.last
	now := a.opts.Now().UTC()
	if a.segSize == 0 {
		a.segSince = now
	}
	if a.bw == nil {
		a.bw = bufio.NewWriterSize(nil, 256<<10)
	}
	bw := a.bw
	bw.Reset(a.seg)
	var written int64
	for _, r := range batch {
		seq++
		r.h.Seq, r.h.Prev, r.h.Time = seq, last, now
		r.h.PLen, r.h.PSHA = r.payload.len(), r.payload.sha()
		if r.sign != nil {
			r.sign(&r.h)
		}
		hb, err := json.Marshal(&r.h)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(hb)
		var fixed [8]byte
		copy(fixed[:4], recordMagic)
		binary.BigEndian.PutUint32(fixed[4:], uint32(len(hb)))
		bw.Write(fixed[:])
		bw.Write(hb)
		binary.BigEndian.PutUint64(fixed[:], uint64(r.h.PLen))
		bw.Write(fixed[:])
		if err := r.payload.writeTo(bw); err != nil {
			a.seg.Truncate(a.segSize)
			return fmt.Errorf("archive: write %s: %w", a.segName, err)
		}
		bw.Write(sum[:])
		written += 8 + int64(len(hb)) + 8 + r.h.PLen + 32
		last = hex.EncodeToString(sum[:])
	}
	if err := bw.Flush(); err != nil {
		a.seg.Truncate(a.segSize)
		return fmt.Errorf("archive: write %s: %w", a.segName, err)
	}
	if err := fdatasync(a.seg); err != nil {
		a.seg.Truncate(a.segSize)
		return fmt.Errorf("archive: fsync %s: %w", a.segName, err)
	}
	a.seq, a.last = seq, last
	a.segSize += written
	a.headSeg, a.headTime = a.segName, now
	// Only now: the head file is never ahead of the durable archive.
	a.saveHead(false)
	a.mu.Lock()
	a.headSeq, a.headHash = seq, last
	a.mu.Unlock()
	return nil
}

// writer appends what the Record methods hand it: whatever arrived while
// the last fsync ran goes out together, sharing the next one (group commit).
func (a *Archive) writer() {
	defer close(a.stopped)
	defer func() {
		if a.seg != nil {
			a.seg.Close()
		}
	}()
	// An idle archive is sealed on time too.
	tick := time.NewTicker(min(a.opts.SealEvery/24, time.Hour))
	defer tick.Stop()
	for {
		var first *appendReq
		select {
		case r, ok := <-a.reqs:
			if !ok {
				return
			}
			first = r
		case <-tick.C:
			a.rotateIfDue()
			continue
		}
		if first.op != nil {
			first.done <- first.op()
			continue
		}
		batch := []*appendReq{first}
		size := first.payload.len()
	gather:
		for len(batch) < 512 && size < 8<<20 {
			select {
			case r, ok := <-a.reqs:
				if !ok {
					break gather
				}
				if r.op != nil {
					// Keep order: write what came before, then run the op.
					err := a.appendBatch(batch)
					for _, b := range batch {
						b.payload.close()
						b.done <- err
					}
					batch = nil
					r.done <- r.op()
					break gather
				}
				batch = append(batch, r)
				size += r.payload.len()
			default:
				break gather
			}
		}
		if len(batch) == 0 {
			continue
		}
		err := a.appendBatch(batch)
		for _, r := range batch {
			r.payload.close()
			r.done <- err
		}
		if err == nil {
			a.rotateIfDue()
		}
	}
}

// rotateIfDue seals the segment when it is full, or its first record has
// waited SealEvery for a seal.
func (a *Archive) rotateIfDue() {
	full := a.segSize >= a.opts.SegmentBytes
	old := a.segSize > 0 && a.opts.Now().Sub(a.segSince) >= a.opts.SealEvery
	if !full && !old {
		return
	}
	if err := a.rotate(); err != nil {
		a.log.Error("archive: cannot close the segment; records go on in it", "err", err)
	}
}

// rotate seals the current segment and starts the next.
func (a *Archive) rotate() error {
	h := header{Kind: kindSeal, Segment: a.segName, Last: a.last, PrunesSigned: true,
		Sig: hex.EncodeToString(ed25519.Sign(a.sealKey, sealMessage(a.segName, a.last, true)))}
	if err := a.appendBatch([]*appendReq{{h: h}}); err != nil {
		return err
	}
	old := a.seg
	if err := a.newSegment(segNumber(a.segName) + 1); err != nil {
		return err
	}
	return old.Close()
}

// submit hands a record to the writer and waits until it is durable.
func (a *Archive) submit(ctx context.Context, h header, payload *payload) error {
	r := &appendReq{h: h, payload: payload, done: make(chan error, 1)}
	if err := a.send(ctx, r); err != nil {
		payload.close()
		return err
	}
	// Once handed over, the record is written whatever the caller does: wait.
	return <-r.done
}

// send hands r to the writer, or says why it cannot: ErrClosed once Close
// has begun, or ctx's error. Close waits for sends under way, so reqs is
// never closed under a sender.
func (a *Archive) send(ctx context.Context, r *appendReq) error {
	a.sendMu.RLock()
	defer a.sendMu.RUnlock()
	if a.closed {
		return ErrClosed
	}
	// The writer drains reqs until Close closes it, so this send cannot
	// hold Close up for longer than the writer's current batch.
	select {
	case a.reqs <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the writer after what was handed to it is written. Records
// and operations asked for once Close has begun return ErrClosed.
func (a *Archive) Close() error {
	a.sendMu.Lock()
	if a.closed {
		a.sendMu.Unlock()
		return nil
	}
	a.closed = true
	close(a.reqs)
	a.sendMu.Unlock()
	<-a.stopped
	close(a.headSync)
	<-a.headSynced
	return a.lock.Close()
}

// addrHash is a keyed hash of an address: lets export and holds find a
// client's records without the address being on disk in clear.
func (a *Archive) addrHash(s string) string { return addrHash(a.hashKey, s) }

func addrHash(key []byte, s string) string {
	n, err := addr.Normalize(s)
	if err != nil {
		n = strings.ToLower(strings.TrimSpace(s))
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(n))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// encrypt seals v (and body, when given) to the archive key: the relay can
// write records it cannot read back.
func (a *Archive) encrypt(meta any, body io.Reader) (*payload, *bodyInfo, error) {
	out := &payload{dir: a.dir, h: sha256.New()}
	if sized, ok := body.(interface{ Size() int64 }); ok {
		// The record is the message plus a few percent (packet headers,
		// the metadata): sized for it, the payload is not grown a
		// doubling at a time, and a large one goes to its file at once.
		if want := sized.Size() + sized.Size()/32 + 8<<10; want <= payloadInMemory {
			out.mem = make([]byte, 0, want)
		} else {
			out.toFile = true
		}
	}
	rk, err := a.recordKey()
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*payload, *bodyInfo, error) {
		out.close()
		return nil, nil, err
	}
	out.Write(rk.pkesk)
	// SEIPDv1, not AEAD: what every OpenPGP implementation reads, GnuPG 2.2
	// included.
	sealed, err := packet.SerializeSymmetricallyEncrypted(out, rk.ciph, false, packet.CipherSuite{}, rk.key, nil)
	if err != nil {
		return fail(fmt.Errorf("archive: encrypt: %w", err))
	}
	w, err := packet.SerializeLiteral(sealed, true, "", 0)
	if err != nil {
		return fail(fmt.Errorf("archive: encrypt: %w", err))
	}
	var info *bodyInfo
	if body != nil {
		info = &bodyInfo{}
		head := &capped{max: 256 << 10}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(chunked{w}, head, h), body)
		if err != nil {
			return fail(fmt.Errorf("archive: read message: %w", err))
		}
		info.size, info.sha256 = n, hex.EncodeToString(h.Sum(nil))
		info.parseHeader(head.Bytes())
	}
	if mm, ok := meta.(*messageMeta); ok && info != nil {
		mm.Subject, mm.From, mm.MessageID, mm.Size, mm.SHA256 = info.subject, info.from, info.messageID, info.size, info.sha256
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return fail(err)
	}
	// The metadata follows the body, with its length last: the body is
	// streamed in before anything about it is known.
	w.Write(mb)
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(mb)))
	w.Write(l[:])
	if err := w.Close(); err != nil {
		return fail(fmt.Errorf("archive: encrypt: %w", err))
	}
	if out.err != nil {
		return fail(out.err)
	}
	return out, info, nil
}

// payload is an encrypted payload on its way to the writer: in memory
// while small, in a temporary file once large, so a 50 MB message is never
// held in memory.
type payload struct {
	dir    string
	mem    []byte
	toFile bool // known to be too large for memory: straight to the file
	file   *os.File
	n      int64
	h      hash.Hash
	err    error
}

const payloadInMemory = 2 << 20

func (p *payload) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	p.h.Write(b)
	p.n += int64(len(b))
	if p.file == nil && !p.toFile && len(p.mem)+len(b) <= payloadInMemory {
		p.mem = append(p.mem, b...)
		return len(b), nil
	}
	if p.file == nil {
		tmp := filepath.Join(p.dir, "tmp")
		os.MkdirAll(tmp, 0o700)
		f, err := os.CreateTemp(tmp, "payload-*")
		if err != nil {
			p.err = fmt.Errorf("archive: %w", err)
			return 0, p.err
		}
		os.Remove(f.Name()) // gone with the last close, even after a crash
		if _, err := f.Write(p.mem); err != nil {
			f.Close()
			p.err = fmt.Errorf("archive: %w", err)
			return 0, p.err
		}
		p.file, p.mem = f, nil
	}
	if _, err := p.file.Write(b); err != nil {
		p.err = fmt.Errorf("archive: %w", err)
		return 0, p.err
	}
	return len(b), nil
}

func (p *payload) len() int64 {
	if p == nil {
		return 0
	}
	return p.n
}

func (p *payload) sha() string {
	if p == nil || p.n == 0 {
		return ""
	}
	return hex.EncodeToString(p.h.Sum(nil))
}

func (p *payload) writeTo(w io.Writer) error {
	if p == nil {
		return nil
	}
	if p.file == nil {
		_, err := w.Write(p.mem)
		return err
	}
	if _, err := p.file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	n, err := io.Copy(w, p.file)
	if err == nil && n != p.n {
		err = fmt.Errorf("payload file holds %d bytes, want %d", n, p.n)
	}
	return err
}

func (p *payload) close() {
	if p != nil && p.file != nil {
		p.file.Close()
	}
}

type bodyInfo struct {
	size                     int64
	sha256                   string
	subject, from, messageID string
}

func (b *bodyInfo) parseHeader(raw []byte) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return
	}
	mh := mail.Header{Header: message.Header{Header: h}}
	b.subject, _ = mh.Subject()
	b.messageID, _ = mh.MessageID()
	b.from = h.Get("From")
}

// capped keeps the first max bytes written to it.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// messageMeta is what an archived message's payload says about it.
type messageMeta struct {
	Message
	Subject   string `json:"subject"`
	From      string `json:"from"`
	MessageID string `json:"message_id"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
}

// RecordMessage archives a message with its decisions. It returns once the
// record is on disk (fsynced).
func (a *Archive) RecordMessage(ctx context.Context, m Message, body io.Reader) error {
	meta := &messageMeta{Message: m}
	payload, _, err := a.encrypt(meta, body)
	if err != nil {
		return err
	}
	h := header{Kind: kindMessage, ID: m.ID, Dir: string(m.Direction)}
	seen := map[string]bool{}
	for _, d := range m.Decisions {
		if x := a.addrHash(d.Address); !seen[x] {
			seen[x] = true
			h.Addrs = append(h.Addrs, x)
		}
	}
	if m.Direction == Inbound && m.Sender != "" {
		h.Addrs = append(h.Addrs, a.addrHash(m.Sender))
	}
	return a.submit(ctx, h, payload)
}

// MessagesRecorded says which of ids have a message record. The relay asks
// after a crash about messages it spooled while their record was being
// written: only those whose record is here were ever answered 250. Every
// segment is read if need be (newest first, where such records are), so a
// record is never missed.
func (a *Archive) MessagesRecorded(ctx context.Context, ids []string) (map[string]bool, error) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	found := map[string]bool{}
	segs, err := listSegments(a.dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	for i := len(segs) - 1; i >= 0 && len(found) < len(want); i-- {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := scanHeaders(filepath.Join(a.dir, segs[i]), func(h *header, _ []byte) {
			if h.Kind == kindMessage && want[h.ID] {
				found[h.ID] = true
			}
		})
		// The segment being written may end in a record still in progress.
		if err != nil && !errors.Is(err, errIncomplete) {
			return nil, fmt.Errorf("archive: %w", err)
		}
	}
	return found, nil
}

// RecordEvent archives a later fact about a message.
func (a *Archive) RecordEvent(ctx context.Context, e Event) error {
	payload, _, err := a.encrypt(e, nil)
	if err != nil {
		return err
	}
	h := header{Kind: kindEvent, ID: e.MessageID, Event: string(e.Kind)}
	for _, r := range e.Recipients {
		h.Addrs = append(h.Addrs, a.addrHash(r))
	}
	return a.submit(ctx, h, payload)
}

// RecordRefusal archives a refused recipient or message.
func (a *Archive) RecordRefusal(ctx context.Context, r Refusal) error {
	payload, _, err := a.encrypt(r, nil)
	if err != nil {
		return err
	}
	h := header{Kind: kindRefusal}
	if r.Recipient != "" {
		h.Addrs = []string{a.addrHash(r.Recipient)}
	}
	return a.submit(ctx, h, payload)
}

// RecordConsent archives an event of the consent registry.
func (a *Archive) RecordConsent(ctx context.Context, ev record.ConsentEvent) error {
	payload, _, err := a.encrypt(ev, nil)
	if err != nil {
		return err
	}
	h := header{Kind: kindConsent, Consent: ev.ID}
	for _, x := range ev.Addresses {
		h.Addrs = append(h.Addrs, a.addrHash(x))
	}
	if err := a.submit(ctx, h, payload); err != nil {
		return err
	}
	a.mu.Lock()
	if ev.ID > a.lastConsent {
		a.lastConsent = ev.ID
	}
	a.mu.Unlock()
	return nil
}

// LastConsentID is the highest consent event id in the record.
func (a *Archive) LastConsentID() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastConsent
}

// ChainHead is the hash of the newest durable record: auditors compare it
// with an export's manifest.
func (a *Archive) ChainHead() (uint64, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.headSeq, a.headHash
}

func writeFileSync(path string, b []byte) error {
	if err := fsutil.WriteFileSync(path, b, 0o600); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	if err := fsutil.SyncDir(dir); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}

func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// ErrKeyMissing is returned by Open when a key file of an archive that
// already holds records is missing: it is to be restored from a backup.
var ErrKeyMissing = errors.New("a key of the archive is missing")

// isNewArchive says whether the archive in dir holds nothing yet: no
// segment with a byte in it.
func isNewArchive(dir string) (bool, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return false, fmt.Errorf("archive: %w", err)
	}
	for _, s := range segs {
		fi, err := os.Stat(filepath.Join(dir, s))
		if err != nil {
			return false, fmt.Errorf("archive: %w", err)
		}
		if fi.Size() > 0 {
			return false, nil
		}
	}
	return true, nil
}

func keyMissing(path, what string) error {
	return fmt.Errorf("archive: %w: %s is missing, but the archive already holds records: restore it from a backup of %s (%s); a new key is made only for a new archive",
		ErrKeyMissing, path, filepath.Dir(path), what)
}

// loadOrMakeSealKey returns the Ed25519 key that seals closed segments;
// its public half (seal.pub) goes into every export. It is made only for a
// new archive (fresh).
func loadOrMakeSealKey(dir string, fresh bool) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, "seal.key")
	pubPath := filepath.Join(dir, "seal.pub")
	b, err := os.ReadFile(path)
	if err == nil {
		seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("archive: %s is not a seal key", path)
		}
		priv := ed25519.NewKeyFromSeed(seed)
		// A first start that stopped between the two files left no seal.pub.
		if _, err := os.Stat(pubPath); errors.Is(err, os.ErrNotExist) {
			if err := writeFileSync(pubPath, []byte(hex.EncodeToString(priv.Public().(ed25519.PublicKey))+"\n")); err != nil {
				return nil, err
			}
		}
		return priv, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if !fresh {
		return nil, keyMissing(path, "without it, segments cannot be sealed so that the chain verifies against seal.pub")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(path, []byte(hex.EncodeToString(priv.Seed())+"\n")); err != nil {
		return nil, err
	}
	if err := writeFileSync(pubPath, []byte(hex.EncodeToString(pub)+"\n")); err != nil {
		return nil, err
	}
	return priv, nil
}

// loadOrMakeHashKey returns the key of the address hashes; it is made only
// for a new archive (fresh).
func loadOrMakeHashKey(dir string, fresh bool) ([]byte, error) {
	path := filepath.Join(dir, "address-hash.key")
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err == nil {
		return nil, fmt.Errorf("archive: %s is damaged", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if !fresh {
		return nil, keyMissing(path, "without it, the records of clients already in the archive are not found by holds or export --client")
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return key, writeFileSync(path, key)
}

// scanHeaders calls f for the header of each complete record in a segment,
// skipping payloads without reading them.
func scanHeaders(path string, f func(h *header, raw []byte)) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	var off int64
	var fixed [8]byte
	for off < size {
		if size-off < 8 {
			return errIncomplete
		}
		if _, err := file.ReadAt(fixed[:], off); err != nil {
			return err
		}
		if string(fixed[:4]) != recordMagic {
			return &recordError{segment: filepath.Base(path), offset: off, msg: "not the start of a record"}
		}
		hl := int64(binary.BigEndian.Uint32(fixed[4:]))
		if hl > maxHeaderLen || size-off < 8+hl+8 {
			return errIncomplete
		}
		hb := make([]byte, hl)
		if _, err := file.ReadAt(hb, off+8); err != nil {
			return err
		}
		if _, err := file.ReadAt(fixed[:], off+8+hl); err != nil {
			return err
		}
		pl := int64(binary.BigEndian.Uint64(fixed[:]))
		if pl < 0 || size-off < 8+hl+8+pl+32 {
			return errIncomplete
		}
		var h header
		if err := json.Unmarshal(hb, &h); err != nil {
			return &recordError{segment: filepath.Base(path), offset: off, msg: "header does not parse"}
		}
		f(&h, hb)
		off += 8 + hl + 8 + pl + 32
	}
	return nil
}

// CloseSegment seals the segment being written now and starts the next
// (tests and admins use it before a prune; segments also close by size).
func (a *Archive) CloseSegment(ctx context.Context) error {
	return a.do(ctx, a.rotate)
}

// Size is the bytes of the archive's segments on disk (for metrics).
func (a *Archive) Size() (int64, error) {
	segs, err := listSegments(a.dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, s := range segs {
		fi, err := os.Stat(filepath.Join(a.dir, s))
		if err != nil {
			continue // pruned while we looked
		}
		n += fi.Size()
	}
	return n, nil
}

// Dir is the folder the archive is written to.
func (a *Archive) Dir() string { return a.dir }

// chunked hands w at most chunkSize octets per write: go-crypto's packet
// writers keep each write whole in a buffer, and its CFB allocates a copy
// of each, so a body written in one piece (a bytes.Reader's) would be in
// memory three times.
type chunked struct{ w io.Writer }

const chunkSize = 64 << 10

func (c chunked) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), chunkSize)
		m, err := c.w.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}
