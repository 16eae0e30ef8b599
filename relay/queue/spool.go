package queue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealpost/sealpost/relay/internal/dirsync"
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
	dirSync *dirsync.Group // qdir's

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
func openSpool(dir string) (*spool, error) {
	qdir := filepath.Join(dir, queueDir)
	fdir := filepath.Join(dir, freeDir)
	for _, d := range []string{dir, qdir, fdir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool %s is in use by another sealpost serve", dir)
	}
	if ents, err := os.ReadDir(fdir); err == nil {
		for _, de := range ents {
			os.Remove(filepath.Join(fdir, de.Name()))
		}
	}
	return &spool{dir: dir, qdir: qdir, fdir: fdir, lock: lock, dirSync: dirsync.New(qdir)}, nil
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

// Incoming is a message being taken in. It is the rules.Sink its copies go
// to: each copy is a section of the one spool file. Commit makes it
// durable and Queue.Enqueue schedules its delivery; Abort removes it unless
// it was enqueued.
type Incoming struct {
	s        *spool
	id       string
	received time.Time
	path     string
	f        *os.File
	size     int64
	sections map[string]section
	open     bool   // a section is being written
	entry    *entry // once committed
	awaiting bool   // committed with awaitingMagic
	closed   bool   // enqueued or aborted
}

type section struct {
	Off int64 `json:"off"`
	Len int64 `json:"len"`
}

func (s *spool) newIncoming(id string, received time.Time) (*Incoming, error) {
	path := filepath.Join(s.qdir, id+msgSuffix)
	f := s.reuse(path)
	if f == nil {
		var err error
		if f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	return &Incoming{s: s, id: id, received: received, path: path, f: f, sections: map[string]section{}}, nil
}

// Create starts the next copy. Copies are written one at a time.
func (in *Incoming) Create(name string) (io.WriteCloser, error) {
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
// rules write armor and MIME a few kilobytes at a time, and a pwrite for
// each would be a noticeable part of the relay's CPU.
type sectionWriter struct {
	in     *Incoming
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
func (in *Incoming) Open(name string) (io.ReadCloser, error) {
	sec, ok := in.sections[name]
	if !ok {
		return nil, fmt.Errorf("spool: no copy %q", name)
	}
	return sectionReadCloser{io.NewSectionReader(in.f, sec.Off, sec.Len)}, nil
}

// Keep gives back the disk space of every copy that copies do not name:
// nobody will read it (the plain copy of a message that goes out only
// encrypted, needed to make the encrypted copy and the archive record, or
// a copy the rules wrote and then replaced). Punching the hole before the
// fsync also spares writing it to disk. Best effort: a filesystem without
// hole punching keeps the copy, unread.
func (in *Incoming) Keep(copies []rules.Copy) {
	for name, sec := range in.sections {
		if copyNamed(copies, name) || in.open {
			continue
		}
		delete(in.sections, name)
		unix.Fallocate(int(in.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, sec.Off, sec.Len)
	}
}

func copyNamed(copies []rules.Copy, name string) bool {
	for _, c := range copies {
		if c.Name == name {
			return true
		}
	}
	return false
}

// sectionReadCloser keeps the section's Size visible (the archive sizes
// its buffer by it).
type sectionReadCloser struct{ *io.SectionReader }

func (sectionReadCloser) Close() error { return nil }

// Envelope is what the queue keeps of an accepted message besides the
// contents of its copies.
type Envelope struct {
	Account string
	// Sender is the address the account was checked against: the
	// provider's MAIL FROM, and where notices go.
	Sender string
	Copies []rules.Copy
}

// Commit appends the message's metadata and makes it durable: the file
// fsynced, then the folder (shared with concurrent commits).
// awaitingArchive marks a message whose archive record is being written at
// the same time; Enqueue clears the mark, which says the record is
// durable. The file stays open until Enqueue or Abort.
func (in *Incoming) Commit(env Envelope, awaitingArchive bool) error {
	return in.commit(newEntry(in.s, in.id, env.Account, env.Sender, in.received, env.Copies, false), awaitingArchive)
}

func (in *Incoming) commit(e *entry, awaitingArchive bool) error {
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
	if err := in.s.dirSync.Sync(); err != nil {
		return err
	}
	e.path = in.path
	in.entry = e
	in.awaiting = awaitingArchive
	return nil
}

// confirm says the message's archive record is durable (see Commit) and
// closes the file. A mark that is not written only means the archive is
// asked about the message after a crash.
func (in *Incoming) confirm() {
	if in.awaiting {
		markArchived(in.f, in.size)
	}
	in.f.Close()
	in.closed = true
}

// markArchived overwrites the octet that tells awaitingMagic from
// spoolMagic. A single octet is written whole or not at all.
func markArchived(f *os.File, size int64) error {
	_, err := f.WriteAt([]byte{spoolMagic[len(spoolMagic)-2]}, size-2)
	return err
}

// Abort removes the message from the spool, unless it was enqueued.
func (in *Incoming) Abort() {
	if in.closed {
		return
	}
	in.closed = true
	in.f.Close()
	os.Remove(in.path)
}
