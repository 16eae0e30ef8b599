package offsite

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sealpost/sealpost/archive"
)

// Options set up an Uploader.
type Options struct {
	Client       *Client
	Node         string
	ArchiveDir   string // data_dir/archive: read, never written
	HeadFile     string // data_dir/archive-head
	StateFile    string // data_dir/archive-offsite.json
	Retention    time.Duration
	TailInterval time.Duration
	// ScanEvery is how often the folder is looked at for newly sealed
	// segments (default 5 s, at most TailInterval).
	ScanEvery time.Duration
	Now       func() time.Time
	Logger    *slog.Logger
}

// Uploader copies one node's archive into the bucket, in a goroutine of its
// own (Run), and says how far behind the copy is (Status).
type Uploader struct {
	o Options

	mu       sync.Mutex
	st       *state
	pending  int
	lastErr  error
	failures int
	// holdIDs are the active legal holds when holdsDone's segments had
	// their S3 legal holds set to match
	holdIDs   string
	holdsDone map[string]bool
}

// Status is how far behind the off-site copy is.
type Status struct {
	Where     string        `json:"where"` // https://host (bucket B)
	Lag       time.Duration `json:"lag"`   // since nothing was waiting; 0 now
	Pending   int           `json:"pending"`
	SyncedAt  time.Time     `json:"synced_at"`
	LastError string        `json:"last_error,omitempty"`
	// Unreachable: the last error was the server not answering (rather
	// than refusing).
	Unreachable bool `json:"unreachable,omitempty"`
}

// NewUploader reads the state file; without one (or with one for another
// bucket or node) every file is checked against the bucket again.
func NewUploader(o Options) *Uploader {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ScanEvery <= 0 {
		o.ScanEvery = 5 * time.Second
	}
	o.ScanEvery = min(o.ScanEvery, o.TailInterval)
	u := &Uploader{o: o}
	st, err := readState(o.StateFile)
	if err == nil && st.Bucket == o.Client.bucket && st.Prefix == o.Client.prefix && st.Node == o.Node {
		u.st = st
	} else {
		u.st = &state{Bucket: o.Client.bucket, Prefix: o.Client.prefix, Node: o.Node, Objects: map[string]*uploaded{}, SyncedAt: o.Now()}
	}
	return u
}

// Status says how far behind the copy is.
func (u *Uploader) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := Status{Where: u.o.Client.Where(), Pending: u.pending, SyncedAt: u.st.SyncedAt}
	if u.pending > 0 || u.lastErr != nil {
		s.Lag = u.o.Now().Sub(u.st.SyncedAt)
	}
	if u.lastErr != nil {
		s.LastError = u.lastErr.Error()
		var ne net.Error
		s.Unreachable = errors.As(u.lastErr, &ne)
	}
	return s
}

// Run uploads until ctx ends: what is waiting at every scan, the tail every
// TailInterval; after a failure it tries again with a growing pause (1 s
// doubling up to a minute). It returns when ctx ends, abandoning an upload
// under way (the next start does it again).
func (u *Uploader) Run(ctx context.Context) {
	var lastTail time.Time
	for {
		tailDue := u.o.Now().Sub(lastTail) >= u.o.TailInterval
		err := u.pass(ctx, tailDue)
		if ctx.Err() != nil {
			return
		}
		wait := u.o.ScanEvery
		u.mu.Lock()
		if err != nil {
			if u.failures == 0 {
				u.o.Logger.Warn("the off-site copy of the record could not be updated; trying again", "where", u.o.Client.Where(), "err", err)
			}
			u.failures++
			wait = min(time.Second<<min(u.failures-1, 6), time.Minute)
		} else {
			if u.failures > 0 {
				u.o.Logger.Info("the off-site copy of the record is up to date again", "where", u.o.Client.Where(), "failures", u.failures)
			}
			u.failures = 0
			if tailDue {
				lastTail = u.o.Now()
			}
		}
		u.lastErr = err
		u.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// pass uploads what is waiting: the key files, sealed segments, and when
// tailDue the tail and the head file, then the legal holds. The head is
// read before the tail is, so the newest head object never names a record
// the newest tail object lacks.
func (u *Uploader) pass(ctx context.Context, tailDue bool) error {
	start := u.o.Now()
	head, _ := os.ReadFile(u.o.HeadFile)
	names, err := archive.Segments(u.o.ArchiveDir)
	if err != nil {
		return fmt.Errorf("offsite: %w", err)
	}
	waiting, err := u.waiting(names)
	if err != nil {
		return err
	}
	newest := ""
	if len(names) > 0 {
		newest = names[len(names)-1]
	}
	tail, err := u.tailWaiting(newest, !tailDue)
	if err != nil {
		return err
	}
	headWaiting := len(head) > 0 && sum(head) != u.st.HeadSum
	u.setPending(len(waiting) + boolInt(tail != nil) + boolInt(headWaiting))
	for _, w := range waiting {
		if err := u.uploadFile(ctx, w); err != nil {
			return err
		}
		u.addPending(-1)
	}
	if tailDue {
		if tail != nil {
			if err := u.uploadTail(ctx, *tail); err != nil {
				return err
			}
			u.addPending(-1)
		}
		if headWaiting {
			if err := u.uploadHead(ctx, head); err != nil {
				return err
			}
			u.addPending(-1)
		}
		if err := u.applyHolds(ctx); err != nil {
			return err
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.pending == 0 {
		u.st.SyncedAt = start
	}
	return u.st.save(u.o.StateFile)
}

// waitingFile is a file of the folder to upload once.
type waitingFile struct {
	name        string
	size        int64
	retainUntil time.Time
}

// waiting lists the key files and sealed segments not in the bucket: every
// segment but the newest (the writer starts the next one as it seals one,
// and it is the tail's until then).
func (u *Uploader) waiting(names []string) ([]waitingFile, error) {
	var out []waitingFile
	now := u.o.Now()
	for _, k := range archive.KeyFiles {
		if u.st.Objects[k] != nil {
			continue
		}
		if fi, err := os.Stat(filepath.Join(u.o.ArchiveDir, k)); err == nil {
			out = append(out, waitingFile{name: k, size: fi.Size(), retainUntil: now.Add(u.o.Retention)})
		}
	}
	for i, name := range names {
		if u.st.Objects[name] != nil {
			continue
		}
		if i == len(names)-1 {
			break
		}
		info, err := archive.ReadSegmentInfo(u.o.ArchiveDir, name)
		if err != nil {
			return nil, fmt.Errorf("offsite: %s: %w", name, err)
		}
		if !info.Sealed {
			// Not the relay's doing: archive verify names it.
			u.o.Logger.Warn("a segment that is not the newest has no seal; it is not uploaded", "segment", name)
			continue
		}
		out = append(out, waitingFile{name: name, size: info.Size, retainUntil: info.Newest.Add(u.o.Retention)})
	}
	return out, nil
}

// tailWaiting is the newest segment as far as its last whole record, when
// that differs from the newest tail object; nil when it does not. With
// quick, only its size is compared (for the count of what is waiting).
func (u *Uploader) tailWaiting(newest string, quick bool) (*archive.SegmentInfo, error) {
	if newest == "" || u.st.Objects[newest] != nil {
		return nil, nil
	}
	if quick {
		fi, err := os.Stat(filepath.Join(u.o.ArchiveDir, newest))
		if err != nil || (newest == u.st.Tail.Segment && fi.Size() == u.st.Tail.Size) || fi.Size() == 0 {
			return nil, nil
		}
		return &archive.SegmentInfo{Name: newest}, nil
	}
	info, err := archive.ReadSegmentInfo(u.o.ArchiveDir, newest)
	if err != nil {
		return nil, fmt.Errorf("offsite: %s: %w", newest, err)
	}
	if info.Records == 0 || (newest == u.st.Tail.Segment && info.Size == u.st.Tail.Size) {
		return nil, nil
	}
	return &info, nil
}

func (u *Uploader) uploadFile(ctx context.Context, w waitingFile) error {
	f, err := os.Open(filepath.Join(u.o.ArchiveDir, w.name))
	if err != nil {
		return fmt.Errorf("offsite: %w", err)
	}
	defer f.Close()
	sec := io.NewSectionReader(f, 0, w.size)
	s, err := fileSum(sec, w.size)
	if err != nil {
		return fmt.Errorf("offsite: %s: %w", w.name, err)
	}
	v, err := u.o.Client.putOnce(ctx, u.o.Client.segmentKey(u.o.Node, w.name), sec, w.size, s, w.retainUntil)
	if err != nil {
		return err
	}
	u.mu.Lock()
	u.st.Objects[w.name] = &uploaded{Version: v, SHA256: s, RetainUntil: w.retainUntil}
	err = u.st.save(u.o.StateFile)
	u.mu.Unlock()
	return err
}

func (u *Uploader) uploadTail(ctx context.Context, info archive.SegmentInfo) error {
	f, err := os.Open(filepath.Join(u.o.ArchiveDir, info.Name))
	if err != nil {
		return fmt.Errorf("offsite: %w", err)
	}
	defer f.Close()
	sec := io.NewSectionReader(f, 0, info.Size)
	s, err := fileSum(sec, info.Size)
	if err != nil {
		return fmt.Errorf("offsite: %s: %w", info.Name, err)
	}
	at := u.stamp()
	if _, err := u.o.Client.putOnce(ctx, u.o.Client.tailKey(u.o.Node, info.Name, at), sec, info.Size, s, at.Add(u.o.Retention)); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.st.Tail = tailState{Segment: info.Name, Size: info.Size, At: at}
	return u.st.save(u.o.StateFile)
}

func (u *Uploader) uploadHead(ctx context.Context, head []byte) error {
	at := u.stamp()
	s := sum(head)
	if _, err := u.o.Client.putOnce(ctx, u.o.Client.headKey(u.o.Node, at), bytes.NewReader(head), int64(len(head)), s, at.Add(u.o.Retention)); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.st.HeadSum = s
	return u.st.save(u.o.StateFile)
}

// stamp is now to the millisecond, later than the newest tail's: two
// objects never share a key.
func (u *Uploader) stamp() time.Time {
	t := u.o.Now().UTC().Truncate(time.Millisecond)
	if !t.After(u.st.Tail.At) {
		t = u.st.Tail.At.Add(time.Millisecond)
	}
	return t
}

// applyHolds sets S3 legal holds on the uploaded segments that active legal
// holds cover, and lifts them from those no hold covers any more. A
// segment's answer stands until the active holds change.
func (u *Uploader) applyHolds(ctx context.Context) error {
	ids, err := archive.ActiveHoldIDs(ctx, u.o.ArchiveDir)
	if err != nil {
		return fmt.Errorf("offsite: legal holds: %w", err)
	}
	if key := strings.Join(ids, ","); key != u.holdIDs || u.holdsDone == nil {
		u.holdIDs, u.holdsDone = key, map[string]bool{}
	}
	var names []string
	for name := range u.st.Objects {
		if filepath.Ext(name) == ".log" && !u.holdsDone[name] {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	held, err := archive.HeldSegments(ctx, u.o.ArchiveDir, names)
	if err != nil {
		return fmt.Errorf("offsite: legal holds: %w", err)
	}
	for _, name := range names {
		o := u.st.Objects[name]
		if want := held[name] != ""; o.LegalHold != want {
			if err := u.o.Client.setLegalHold(ctx, u.o.Client.segmentKey(u.o.Node, name), o.Version, want); err != nil {
				return err
			}
			u.mu.Lock()
			o.LegalHold = want
			err := u.st.save(u.o.StateFile)
			u.mu.Unlock()
			if err != nil {
				return err
			}
			u.o.Logger.Info("S3 legal hold", "segment", name, "on", want)
		}
		u.holdsDone[name] = true
	}
	return nil
}

func (u *Uploader) setPending(n int) {
	u.mu.Lock()
	u.pending = n
	u.mu.Unlock()
}

func (u *Uploader) addPending(d int) {
	u.mu.Lock()
	u.pending += d
	u.mu.Unlock()
}

func sum(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
