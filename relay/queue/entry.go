package queue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/rules"
)

// An entry's life: Incoming.Commit makes it (newEntry) when a message is
// accepted, or a start reads it back from its file (loadEntry); each
// delivery attempt changes its recipients' status (setStatus, setReply);
// when it has to wait, saveState writes its progress beside it; an admin
// may drop it (markDropped); once every recipient has an outcome that is
// in the archive, remove takes it out of the spool.

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
	shown Message
	// spread delays the release of held copies by the entry's place among
	// those held until the same opening (hold.go).
	spread time.Duration
}

type entryMeta struct {
	ID      string `json:"id"`
	Account string `json:"account"`
	// Sender is the envelope sender; a delivery report's is the account's own
	// address, to which it goes ("" in reports spooled by earlier versions).
	Sender   string       `json:"sender"`
	Received time.Time    `json:"received"`
	Copies   []rules.Copy `json:"copies"`
	// Notice marks a delivery report made by sealpost: it is never itself
	// bounced or delayed-notified.
	Notice bool `json:"notice,omitempty"`
	// ReportID is a report's Message-ID (without the angle brackets): the
	// same message and kind of report always has the same one, so that a
	// report put into a mailbox is never put there twice.
	ReportID string `json:"report_id,omitempty"`
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
	// Released names the held copies whose release is recorded.
	Released []string `json:"released,omitempty"`
}

// newEntry builds the queue entry of an accepted message.
func newEntry(s *spool, id, account, sender string, received time.Time, copies []rules.Copy, notice bool) *entry {
	e := &entry{s: s, index: -1, meta: entryMeta{ID: id, Account: account, Sender: sender, Received: received, Copies: copies, Notice: notice}}
	e.state = initialState(e.meta)
	return e
}

// initialState is a message's delivery state before its first attempt; it
// is not written to disk until something has happened.
func initialState(m entryMeta) entryState {
	var st entryState
	for _, c := range m.Copies {
		for _, r := range c.Recipients {
			st.Recipients = append(st.Recipients, rcptState{Recipient: r, Copy: c.Name, Status: rcptPending})
		}
	}
	st.NextAttempt = m.Received
	// The first turn records the hold, and waits for the release.
	st.Unrecorded = heldEvent(m)
	return st
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

// notDelivered lists the recipients a drop keeps the message from: those
// still pending, and those who failed if their sender was not told yet.
func notDelivered(e *entry) []string {
	var out []string
	for _, r := range e.state.Recipients {
		if r.Status == rcptPending || (r.Status == rcptFailed && !e.state.Bounced) {
			out = append(out, r.Recipient)
		}
	}
	return out
}

func hasFailed(e *entry) bool {
	for _, r := range e.state.Recipients {
		if r.Status == rcptFailed {
			return true
		}
	}
	return false
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

func (e *entry) size() int64 {
	var n int64
	for _, sec := range e.meta.Sections {
		n += sec.Len
	}
	return n
}

func describeEntry(e *entry) Message {
	return Message{ID: e.meta.ID, Account: e.meta.Account, Received: e.meta.Received, Size: e.size(),
		Attempts: e.state.Attempts, NextAttempt: e.state.NextAttempt, Pending: len(e.pending()),
		LastError: e.state.LastError, Notice: e.meta.Notice, Dropped: e.dropped, HeldUntil: e.heldUntilShown()}
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
	return e.s.dirSync.Sync()
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

// markDropped notes the drop in the entry's state, and the event naming the
// recipients who never got the message among the outcomes to archive
// before it may leave the spool. Once.
func (e *entry) markDropped(now time.Time) {
	if e.state.Dropped {
		return
	}
	e.state.Dropped = true
	if not := notDelivered(e); len(not) > 0 {
		e.state.Unrecorded = append(e.state.Unrecorded, archive.Event{MessageID: e.meta.ID, Time: now,
			Kind: archive.Dropped, Recipients: not, Reply: "removed from the queue by an admin"})
	}
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
	return e.s.dirSync.Sync()
}
