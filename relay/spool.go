package relay

import (
	"crypto/rand"
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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/rules"
)

// The spool is a folder per message:
//
//	spool/incoming/ID/   being received; removed at the next start if the relay died here
//	spool/queue/ID/      accepted: meta.json (fixed), state.json (delivery progress), one file per copy
//
// A message moves from incoming to queue by renaming its folder, after every
// file in it and the folder itself are fsynced; the rename is fsynced too.
// Only then is the client told 250.

const (
	incomingDir = "incoming"
	queueDir    = "queue"
	metaFile    = "meta.json"
	stateFile   = "state.json"
)

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,40}$`)

type spool struct {
	dir  string
	lock *os.File
}

// openSpool takes the spool's lock (one serve per data dir) and removes
// whatever a crash left half-received.
func openSpool(dir string) (*spool, int, error) {
	for _, d := range []string{dir, filepath.Join(dir, incomingDir), filepath.Join(dir, queueDir)} {
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
	s := &spool{dir: dir, lock: lock}
	ents, err := os.ReadDir(filepath.Join(dir, incomingDir))
	if err != nil {
		return nil, 0, fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, incomingDir, e.Name())); err != nil {
			return nil, 0, fmt.Errorf("spool: clean up %s: %w", e.Name(), err)
		}
	}
	return s, len(ents), nil
}

func (s *spool) close() error { return s.lock.Close() }

var idSeq atomic.Uint32

// newID returns a queue id that sorts by time of arrival: microseconds since
// the epoch, then a counter and random bits against collisions.
func newID(now time.Time) string {
	var r [2]byte
	rand.Read(r[:])
	return fmt.Sprintf("%013x%04x%04x", now.UnixMicro(), idSeq.Add(1)&0xffff, binary.BigEndian.Uint16(r[:]))
}

// incoming is a message being received. It is the rules.Sink its copies are
// written to.
type incoming struct {
	s   *spool
	id  string
	dir string
}

func (s *spool) newIncoming(id string) (*incoming, error) {
	dir := filepath.Join(s.dir, incomingDir, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return &incoming{s: s, id: id, dir: dir}, nil
}

// Create makes a new file in the message's folder; it is fsynced when closed.
func (in *incoming) Create(name string) (io.WriteCloser, error) {
	if !validName.MatchString(name) || name == "meta" || name == "state" {
		return nil, fmt.Errorf("spool: invalid file name %q", name)
	}
	f, err := os.OpenFile(filepath.Join(in.dir, name+".eml"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return &syncFile{f: f}, nil
}

func (in *incoming) Open(name string) (io.ReadCloser, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("spool: invalid file name %q", name)
	}
	f, err := os.Open(filepath.Join(in.dir, name+".eml"))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}

func (in *incoming) remove(name string) error {
	return os.Remove(filepath.Join(in.dir, name+".eml"))
}

// commit makes the message durable and visible to the queue: meta and state
// written and fsynced, the folder fsynced, renamed into the queue, and the
// rename fsynced. Copy files were fsynced when they were closed.
func (in *incoming) commit(e *entry) error {
	if err := writeJSONSync(filepath.Join(in.dir, metaFile), &e.meta); err != nil {
		return err
	}
	if err := writeJSONSync(filepath.Join(in.dir, stateFile), &e.state); err != nil {
		return err
	}
	if err := syncDir(in.dir); err != nil {
		return err
	}
	dst := filepath.Join(in.s.dir, queueDir, in.id)
	if err := os.Rename(in.dir, dst); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := syncDir(filepath.Join(in.s.dir, queueDir)); err != nil {
		return err
	}
	e.dir = dst
	return nil
}

func (in *incoming) abort() { os.RemoveAll(in.dir) }

// syncFile fsyncs on Close, so a copy is durable as soon as its writer is done.
type syncFile struct{ f *os.File }

func (s *syncFile) Write(p []byte) (int, error) { return s.f.Write(p) }
func (s *syncFile) Close() error {
	serr := s.f.Sync()
	cerr := s.f.Close()
	if serr != nil {
		return fmt.Errorf("spool: fsync: %w", serr)
	}
	if cerr != nil {
		return fmt.Errorf("spool: %w", cerr)
	}
	return nil
}

func writeJSONSync(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	sf := &syncFile{f: f}
	if _, err := sf.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("spool: %w", err)
	}
	return sf.Close()
}

// replaceJSON atomically replaces path with v (write beside, fsync, rename, fsync folder).
func replaceJSON(path string, v any) error {
	tmp := path + ".tmp"
	if err := writeJSONSync(tmp, v); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: fsync %s: %w", dir, err)
	}
	return nil
}

// entry is a queued message: what was accepted (meta) and how far delivery got (state).
type entry struct {
	dir   string
	meta  entryMeta
	state entryState

	// scheduling, guarded by the queue's mutex
	index    int  // in the queue's heap; -1 when not in it
	inFlight bool // a worker has it
	dropped  bool // dropped while in flight
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

func (e *entry) saveState() error { return replaceJSON(filepath.Join(e.dir, stateFile), &e.state) }

func (e *entry) open(copyName string) (*os.File, error) {
	if !validName.MatchString(copyName) {
		return nil, fmt.Errorf("spool: invalid copy name %q", copyName)
	}
	return os.Open(filepath.Join(e.dir, copyName+".eml"))
}

// loadQueue reads every queued message, oldest first.
func (s *spool) loadQueue() ([]*entry, []error) {
	qdir := filepath.Join(s.dir, queueDir)
	ents, err := os.ReadDir(qdir)
	if err != nil {
		return nil, []error{err}
	}
	var out []*entry
	var errs []error
	for _, de := range ents {
		e, err := loadEntry(filepath.Join(qdir, de.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("queue entry %s: %w", de.Name(), err))
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].meta.ID < out[j].meta.ID })
	return out, errs
}

func loadEntry(dir string) (*entry, error) {
	e := &entry{dir: dir, index: -1}
	if err := readJSON(filepath.Join(dir, metaFile), &e.meta); err != nil {
		return nil, err
	}
	if err := readJSON(filepath.Join(dir, stateFile), &e.state); err != nil {
		return nil, err
	}
	if e.meta.ID != filepath.Base(dir) {
		return nil, errors.New("id does not match its folder")
	}
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
	for _, c := range e.meta.Copies {
		if fi, err := os.Stat(filepath.Join(e.dir, c.Name+".eml")); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// shortID is a queue id as admins type it: unambiguous prefixes are accepted.
func parseIDPrefix(s string) (string, error) {
	if len(s) < 4 || len(s) > 21 {
		return "", fmt.Errorf("%q is not a queue id", s)
	}
	if _, err := strconv.ParseUint(s[:min(len(s), 16)], 16, 64); err != nil {
		return "", fmt.Errorf("%q is not a queue id", s)
	}
	return s, nil
}
