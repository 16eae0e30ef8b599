package archive

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
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
	// Node is this relay's name among the relays of a group practice that
	// each keep a chain (archive.node); every record carries it. Empty on
	// a practice's only relay. Open refuses a folder whose chain names
	// another node.
	Node string
	// Context ends what Open may take long for (building the index of an
	// archive that has none): a relay told to stop while it starts.
	Context context.Context
	// MayRemove, when set, is asked by Prune about each segment it would
	// remove: "" lets it go, anything else is why it stays (the off-site
	// copy has not got it yet).
	MayRemove func(segment string) string
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
	// ingested are the inbound records written since Open (older ones
	// are found in the index), or all of them when there is no index
	ingested map[string]bool
	ingestAt map[string]IngestSource // account+"\x00"+folder -> newest position

	// index is the record index (nil: it could not be opened, and what a
	// start needs was read from every segment); the writer hands it each
	// durable batch through indexQ.
	index      *recIndex
	indexQ     chan []indexRow
	indexDone  chan struct{}
	indexMu    sync.Mutex
	indexedSeq uint64        // the index's head, as the indexer last wrote it
	indexMoved chan struct{} // closed when indexedSeq changes

	// writer state, owned by the writer goroutine
	bw       *bufio.Writer // reused for every batch
	seg      *os.File
	segName  string
	segSize  int64
	segSince time.Time // when the segment got its first record
	seq      uint64
	last     string
}

// errClosed is returned after Close.
var errClosed = errors.New("archive: closed")

const defaultSegmentBytes = 64 << 20

const defaultSealEvery = 24 * time.Hour

// Open opens (or starts) the archive in opts.Dir. A torn tail a crash left
// is set aside into Dir/torn and recorded in the chain; every complete
// record is kept. A record that is there but damaged stops Open, and so do
// bytes that are not a whole record with a complete record after them (a
// damaged length, not a crash): nothing is written after them until an
// admin looks (sealpost archive verify). The seal and address-hash keys are
// made with a new archive only: missing from one that holds records, they
// stop Open.
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
	if opts.Context == nil {
		opts.Context = context.Background()
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
		if a.index != nil {
			a.index.close()
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
	if err := a.openIndex(); err != nil {
		return fail(err)
	}
	// Also when recovering wrote nothing: an archive from before head
	// files gets one, and one left behind by a crash catches up.
	if err := a.saveHead(true); err != nil {
		return fail(err)
	}
	a.headSeq, a.headHash = a.seq, a.last
	go a.syncHeads()
	if a.index != nil {
		go a.indexer()
	}
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

// Close stops the writer after what was handed to it is written. Records
// and operations asked for once Close has begun return errClosed.
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
	if a.index != nil {
		close(a.indexQ)
		<-a.indexDone
		a.index.close()
	}
	return a.lock.Close()
}

// ChainHead is the hash of the newest durable record: auditors compare it
// with an export's manifest.
func (a *Archive) ChainHead() (uint64, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.headSeq, a.headHash
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
