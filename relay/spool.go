package relay

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/rules"
)

// The spool holds one file per accepted message, spool/queue/ID.msg: every
// outgoing copy one after the other, then the message's metadata (JSON),
// its length and a magic string. The trailer is written last; the file is
// fsynced, then the folder. Only then is the client told 250. A file whose
// trailer is missing or does not parse was never acknowledged: a crash cut
// it off, and the next start removes it. A delivered message's file is
// emptied and kept in spool/free for a later message (see spool.fdir).
//
// The trailer's magic says whether the message's archive record was known
// to be durable when the file was committed: the spool file and the record
// are fsynced at the same time, so a crash can leave a committed file whose
// record never made it, and whose sender was therefore never told 250. After
// a crash the queue asks the archive about such files (awaitingArchive) and
// removes those it does not have. Once both are durable one octet of the
// magic is overwritten in place, without an fsync: a crash may leave the old
// value, which only means asking the archive again.
//
// Delivery progress lives beside it in ID.state, written only when a
// message has to wait (replaced atomically). One file and one fsync per
// message, and folder fsyncs shared by the messages that arrive together,
// keep acceptance fast without giving up durability.

const (
	queueDir    = "queue"
	msgSuffix   = ".msg"
	stateSuffix = ".state"
	spoolMagic  = "\nSEALPOST-SPOOL1\n"
	// awaitingMagic is spoolMagic with the archive record not yet known to
	// be durable; they differ in the octet before the last.
	awaitingMagic = "\nSEALPOST-SPOOLA\n"
)

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,40}$`)

type spool struct {
	dir     string
	qdir    string
	lock    *os.File
	dirSync *groupSync

	// Files of delivered messages, emptied, in spool/free: the next
	// messages' files are these, renamed, rather than new ones. On ext4
	// without a journal every new file costs the kernel a scan past the
	// inodes deleted in the last minutes (hundreds of microseconds of CPU
	// each under a relay's churn: find_inode_bit skips "recently deleted"
	// inodes); a rename allocates nothing.
	fdir    string
	freeMu  sync.Mutex
	free    []string
	freeSeq atomic.Uint64
	noReuse atomic.Bool // the filesystem cannot rename without replacing
}

const (
	freeDir = "free"
	maxFree = 1024 // empty files: an inode and a name each
)

// openSpool takes the spool's lock (one serve per data dir) and removes
// whatever a crash left half-written. Files in spool/free are removed, not
// reused: a crash during a rename can leave a file under both names.
func openSpool(dir string) (*spool, int, error) {
	qdir := filepath.Join(dir, queueDir)
	fdir := filepath.Join(dir, freeDir)
	for _, d := range []string{dir, qdir, fdir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, 0, fmt.Errorf("spool: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, 0, fmt.Errorf("spool %s is in use by another sealpost serve", dir)
	}
	if ents, err := os.ReadDir(fdir); err == nil {
		for _, de := range ents {
			os.Remove(filepath.Join(fdir, de.Name()))
		}
	}
	s := &spool{dir: dir, qdir: qdir, fdir: fdir, lock: lock, dirSync: newGroupSync(qdir)}
	return s, 0, nil
}

// reuse gives path the file of a delivered message, empty, or returns nil.
// RENAME_NOREPLACE keeps O_EXCL's promise: an existing file is never
// replaced.
func (s *spool) reuse(path string) *os.File {
	for !s.noReuse.Load() {
		s.freeMu.Lock()
		if len(s.free) == 0 {
			s.freeMu.Unlock()
			return nil
		}
		free := s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
		s.freeMu.Unlock()
		err := unix.Renameat2(unix.AT_FDCWD, free, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			s.noReuse.Store(true)
		}
		if err != nil {
			os.Remove(free)
			continue
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			os.Remove(path)
			continue
		}
		if fi, err := f.Stat(); err != nil || fi.Size() != 0 {
			f.Close()
			os.Remove(path)
			continue
		}
		return f
	}
	return nil
}

// recycle takes a delivered message's file out of the queue, empties it and
// keeps it for reuse. Renamed first, then emptied: a crash in between
// leaves the message where it was (sent again, at least once) or in
// spool/free (removed at the next start), never an empty file in its place.
func (s *spool) recycle(path string) error {
	s.freeMu.Lock()
	full := len(s.free) >= maxFree
	s.freeMu.Unlock()
	if full || s.noReuse.Load() {
		return os.Remove(path)
	}
	free := filepath.Join(s.fdir, strconv.FormatUint(s.freeSeq.Add(1), 10))
	if err := os.Rename(path, free); err != nil {
		return err
	}
	if err := os.Truncate(free, 0); err != nil {
		os.Remove(free)
		return nil
	}
	s.freeMu.Lock()
	s.free = append(s.free, free)
	s.freeMu.Unlock()
	return nil
}

func (s *spool) close() error { return s.lock.Close() }

// incoming is a message being written. It is the rules.Sink its copies go to:
// each copy is a section of the one spool file.
type incoming struct {
	s        *spool
	id       string
	path     string
	f        *os.File
	size     int64
	sections map[string]section
	open     bool // a section is being written
	awaiting bool // committed with awaitingMagic
}

type section struct {
	Off int64 `json:"off"`
	Len int64 `json:"len"`
}

func (s *spool) newIncoming(id string) (*incoming, error) {
	path := filepath.Join(s.qdir, id+msgSuffix)
	f := s.reuse(path)
	if f == nil {
		var err error
		if f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	return &incoming{s: s, id: id, path: path, f: f, sections: map[string]section{}}, nil
}

// Create starts the next copy. Copies are written one at a time.
func (in *incoming) Create(name string) (io.WriteCloser, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("spool: invalid copy name %q", name)
	}
	if _, dup := in.sections[name]; dup || in.open {
		return nil, fmt.Errorf("spool: copy %q created twice or while another is open", name)
	}
	in.open = true
	return &sectionWriter{in: in, name: name, off: in.size}, nil
}

// sectionWriter writes one copy into the spool file, through a buffer: the
// rules write armor and MIME a few kilobytes at a time, and a pwrite for each
// was a noticeable part of the relay's CPU.
type sectionWriter struct {
	in     *incoming
	name   string
	off    int64
	n      int64 // written to the file
	buf    *[]byte
	closed bool
}

var sectionBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

func (w *sectionWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errors.New("spool: write after close")
	}
	if w.buf == nil {
		w.buf = sectionBufs.Get().(*[]byte)
	}
	b := *w.buf
	if len(b)+len(p) > cap(b) {
		if err := w.flush(); err != nil {
			return 0, err
		}
		b = *w.buf
		if len(p) >= cap(b) {
			n, err := w.in.f.WriteAt(p, w.off+w.n)
			w.n += int64(n)
			if err != nil {
				return n, fmt.Errorf("spool: %w", err)
			}
			return n, nil
		}
	}
	*w.buf = append(b, p...)
	return len(p), nil
}

func (w *sectionWriter) flush() error {
	if w.buf == nil || len(*w.buf) == 0 {
		return nil
	}
	n, err := w.in.f.WriteAt(*w.buf, w.off+w.n)
	w.n += int64(n)
	*w.buf = (*w.buf)[:0]
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

func (w *sectionWriter) Close() error {
	if w.closed {
		return nil
	}
	err := w.flush()
	if w.buf != nil {
		sectionBufs.Put(w.buf)
		w.buf = nil
	}
	if err != nil {
		return err
	}
	w.closed = true
	w.in.sections[w.name] = section{Off: w.off, Len: w.n}
	w.in.size = w.off + w.n
	w.in.open = false
	return nil
}

// Open reads back a copy written earlier.
func (in *incoming) Open(name string) (io.ReadCloser, error) {
	sec, ok := in.sections[name]
	if !ok {
		return nil, fmt.Errorf("spool: no copy %q", name)
	}
	return sectionReadCloser{io.NewSectionReader(in.f, sec.Off, sec.Len)}, nil
}

// drop gives back the disk space of a copy nobody will read (the plain copy
// of a message that goes out only encrypted: it was needed to make the
// encrypted copy and the archive record, not to deliver). Punching the hole
// before the fsync also spares writing it to disk. Best effort: a
// filesystem without hole punching keeps the copy, unread.
func (in *incoming) drop(name string) {
	sec, ok := in.sections[name]
	if !ok || in.open {
		return
	}
	delete(in.sections, name)
	unix.Fallocate(int(in.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, sec.Off, sec.Len)
}

// sectionReadCloser keeps the section's Size visible (the archive sizes
// its buffer by it).
type sectionReadCloser struct{ *io.SectionReader }

func (sectionReadCloser) Close() error { return nil }

// commit appends the metadata trailer and makes the message durable: the
// file fsynced, then the folder (shared with concurrent commits).
// awaitingArchive marks a message whose archive record is being written at
// the same time; confirm clears the mark once it is durable. The file stays
// open until confirm or abort.
func (in *incoming) commit(e *entry, awaitingArchive bool) error {
	e.meta.Sections = in.sections
	meta, err := json.Marshal(&e.meta)
	if err != nil {
		return err
	}
	var tail [8]byte
	binary.BigEndian.PutUint64(tail[:], uint64(len(meta)))
	magic := spoolMagic
	if awaitingArchive {
		magic = awaitingMagic
	}
	trailer := append(append(meta, tail[:]...), magic...)
	if _, err := in.f.WriteAt(trailer, in.size); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	in.size += int64(len(trailer))
	if err := in.f.Sync(); err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	if err := in.s.dirSync.sync(); err != nil {
		return err
	}
	e.path = in.path
	in.awaiting = awaitingArchive
	return nil
}

// confirm says the message's archive record is durable (see commit) and
// closes the file. A mark that is not written only means the archive is
// asked about the message after a crash.
func (in *incoming) confirm() {
	if in.awaiting {
		markArchived(in.f, in.size)
	}
	in.f.Close()
}

// markArchived overwrites the octet that tells awaitingMagic from
// spoolMagic. A single octet is written whole or not at all.
func markArchived(f *os.File, size int64) error {
	_, err := f.WriteAt([]byte{spoolMagic[len(spoolMagic)-2]}, size-2)
	return err
}

func (in *incoming) abort() {
	in.f.Close()
	os.Remove(in.path)
}

// groupSync fsyncs a folder for many callers at once: whoever asks while a
// sync is running waits for the next one, which covers all of them. Under
// load one fsync serves every message that arrived in the meantime.
type groupSync struct {
	dir string
	// fsync syncs dir: syncDir, or in tests one that watches or delays it.
	fsync   func(dir string) error
	mu      sync.Mutex
	running bool
	next    *syncBatch
}

type syncBatch struct {
	done chan struct{}
	err  error
}

func newGroupSync(dir string) *groupSync { return &groupSync{dir: dir, fsync: syncDir} }

func (g *groupSync) sync() error {
	g.mu.Lock()
	if g.next == nil {
		g.next = &syncBatch{done: make(chan struct{})}
	}
	b := g.next
	if !g.running {
		g.running = true
		g.next = nil
		g.mu.Unlock()
		g.run(b)
	} else {
		g.mu.Unlock()
	}
	<-b.done
	return b.err
}

// run syncs for batch b, then hands the batch that gathered meanwhile to a
// new leader, so no caller waits for more than two fsyncs.
func (g *groupSync) run(b *syncBatch) {
	b.err = g.fsync(g.dir)
	close(b.done)
	g.mu.Lock()
	next := g.next
	g.next = nil
	if next == nil {
		g.running = false
	}
	g.mu.Unlock()
	if next != nil {
		go g.run(next)
	}
}

func writeJSONSync(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileSync(path, b, 0o600); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	if err := fsutil.SyncDir(dir); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// entry is a queued message: what was accepted (meta) and how far delivery got (state).
type entry struct {
	path  string // the .msg file
	s     *spool
	meta  entryMeta
	state entryState
	// awaitingArchive: loaded from a file committed while its archive
	// record was being written (see commit); not delivered unless the
	// archive has the record.
	awaitingArchive bool

	// scheduling, guarded by the queue's mutex
	index int // in the queue's heap; -1 when not in it
	// inFlight: a worker (or a drop) has it, and its state is theirs alone
	// until its turn ends.
	inFlight bool
	// dropped: an admin dropped it. It is never sent again; it stays only
	// until its outcomes and the drop are in the archive (state.Dropped
	// keeps that across a restart).
	dropped  bool
	retryNow bool // sealpost queue retry while in flight: due again right after
	// dropWait is the drop waiting for the entry's turn to end.
	dropWait *dropWait
	// shown is what sealpost queue list reports while the entry is in
	// flight.
	shown QueuedMessage
}

type entryMeta struct {
	ID       string       `json:"id"`
	Account  string       `json:"account"`
	Sender   string       `json:"sender"` // "" for delivery status notifications
	Received time.Time    `json:"received"`
	Copies   []rules.Copy `json:"copies"`
	// Notice marks a delivery status notification made by sealpost: it is
	// never itself bounced or delayed-notified.
	Notice bool `json:"notice,omitempty"`
	// Sections says where each copy is in the spool file.
	Sections map[string]section `json:"sections"`
}

type rcptStatus string

const (
	rcptPending   rcptStatus = "pending"
	rcptDelivered rcptStatus = "delivered"
	rcptFailed    rcptStatus = "failed"
)

type rcptState struct {
	Recipient string     `json:"recipient"`
	Copy      string     `json:"copy"`
	Status    rcptStatus `json:"status"`
	Reply     string     `json:"reply,omitempty"`
	Updated   time.Time  `json:"updated,omitempty"`
}

type entryState struct {
	Recipients    []rcptState `json:"recipients"`
	Attempts      int         `json:"attempts"`
	NextAttempt   time.Time   `json:"next_attempt"`
	LastError     string      `json:"last_error,omitempty"`
	DelayNotified bool        `json:"delay_notified,omitempty"`
	Bounced       bool        `json:"bounced,omitempty"` // the notification of failure is queued
	// Unrecorded holds outcomes not yet in the archive; the entry stays until they are.
	Unrecorded []archive.Event `json:"unrecorded,omitempty"`
	// Dropped: an admin dropped the message. It is never sent again and is
	// removed once Unrecorded (which then ends with the drop) is in the
	// archive.
	Dropped bool `json:"dropped,omitempty"`
}

func (e *entry) pending() []rcptState {
	var p []rcptState
	for _, r := range e.state.Recipients {
		if r.Status == rcptPending {
			p = append(p, r)
		}
	}
	return p
}

func (e *entry) setStatus(rcpt string, st rcptStatus, reply string, now time.Time) {
	for i := range e.state.Recipients {
		if e.state.Recipients[i].Recipient == rcpt && e.state.Recipients[i].Status == rcptPending {
			e.state.Recipients[i].Status = st
			e.state.Recipients[i].Reply = reply
			e.state.Recipients[i].Updated = now
			return
		}
	}
}

// setReply notes the last reply about a recipient still pending.
func (e *entry) setReply(rcpt, reply string) {
	for i := range e.state.Recipients {
		if e.state.Recipients[i].Recipient == rcpt && e.state.Recipients[i].Status == rcptPending {
			e.state.Recipients[i].Reply = reply
		}
	}
}

// saveState records delivery progress beside the message (write aside,
// fsync, rename, fsync the folder).
func (e *entry) saveState() error {
	path := strings.TrimSuffix(e.path, msgSuffix) + stateSuffix
	tmp := path + ".tmp"
	if err := writeJSONSync(tmp, &e.state); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return e.s.dirSync.sync()
}

// open reads one copy of a queued message.
func (e *entry) open(copyName string) (io.ReadCloser, error) {
	sec, ok := e.meta.Sections[copyName]
	if !ok {
		return nil, fmt.Errorf("spool: message %s has no copy %q", e.meta.ID, copyName)
	}
	f, err := os.Open(e.path)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, sec.Off, sec.Len), f}, nil
}

// archived clears the mark of awaitingArchive.
func (e *entry) archived() error {
	f, err := os.OpenFile(e.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := markArchived(f, fi.Size()); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	e.awaitingArchive = false
	return nil
}

// remove takes the message out of the queue, then its state, and fsyncs the
// folder (shared with whatever else syncs it meanwhile). The message goes
// first: a crash in between leaves a state file without its message, which
// the next start removes, never a message without its state, which would
// go to every recipient again. Without the folder's fsync a crash soon
// after could bring back a message that was delivered or dropped.
func (e *entry) remove() error {
	if err := e.s.recycle(e.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	os.Remove(strings.TrimSuffix(e.path, msgSuffix) + stateSuffix)
	return e.s.dirSync.sync()
}

// loadQueue reads every committed message, oldest first, and removes files
// a crash left without a trailer (never acknowledged).
func (s *spool) loadQueue() ([]*entry, []string, []error) {
	ents, err := os.ReadDir(s.qdir)
	if err != nil {
		return nil, nil, []error{err}
	}
	var out []*entry
	var errs []error
	var torn []string
	for _, de := range ents {
		name := de.Name()
		switch {
		case strings.HasSuffix(name, msgSuffix):
		case strings.HasSuffix(name, ".tmp"):
			os.Remove(filepath.Join(s.qdir, name))
			continue
		default:
			continue
		}
		path := filepath.Join(s.qdir, name)
		e, err := loadEntry(path)
		if errors.Is(err, errTorn) {
			torn = append(torn, strings.TrimSuffix(name, msgSuffix))
			os.Remove(path)
			os.Remove(strings.TrimSuffix(path, msgSuffix) + stateSuffix)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("queue file %s: %w", name, err))
			continue
		}
		e.s = s
		out = append(out, e)
	}
	// State files whose message is gone (removed after delivery) go too.
	for _, de := range ents {
		if name := de.Name(); strings.HasSuffix(name, stateSuffix) {
			if _, err := os.Stat(filepath.Join(s.qdir, strings.TrimSuffix(name, stateSuffix)+msgSuffix)); errors.Is(err, os.ErrNotExist) {
				os.Remove(filepath.Join(s.qdir, name))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].meta.ID < out[j].meta.ID })
	return out, torn, errs
}

var errTorn = errors.New("incomplete: cut off before it was acknowledged")

func loadEntry(path string) (*entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	tailLen := int64(8 + len(spoolMagic))
	if size < tailLen {
		return nil, errTorn
	}
	tail := make([]byte, tailLen)
	if _, err := f.ReadAt(tail, size-tailLen); err != nil {
		return nil, err
	}
	awaiting := string(tail[8:]) == awaitingMagic
	if string(tail[8:]) != spoolMagic && !awaiting {
		return nil, errTorn
	}
	n := int64(binary.BigEndian.Uint64(tail[:8]))
	if n <= 0 || n > size-tailLen || n > 16<<20 {
		return nil, errTorn
	}
	meta := make([]byte, n)
	if _, err := f.ReadAt(meta, size-tailLen-n); err != nil {
		return nil, err
	}
	e := &entry{path: path, index: -1, awaitingArchive: awaiting}
	if err := json.Unmarshal(meta, &e.meta); err != nil {
		return nil, errTorn
	}
	if e.meta.ID+msgSuffix != filepath.Base(path) {
		return nil, errors.New("id does not match its file name")
	}
	for name, sec := range e.meta.Sections {
		if sec.Off < 0 || sec.Len < 0 || sec.Off+sec.Len > size-tailLen-n {
			return nil, fmt.Errorf("copy %q lies outside the file", name)
		}
	}
	st := strings.TrimSuffix(path, msgSuffix) + stateSuffix
	if err := readJSON(st, &e.state); errors.Is(err, os.ErrNotExist) {
		e.state = initialState(e.meta)
	} else if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	e.dropped = e.state.Dropped
	return e, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (e *entry) size() int64 {
	var n int64
	for _, sec := range e.meta.Sections {
		n += sec.Len
	}
	return n
}
