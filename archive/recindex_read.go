package archive

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// indexReader is the index as a reader of the archive (export, refusals,
// the IMAP view) uses it: the index as far as it goes, and the records
// written after its head, read from the segments (a running relay indexes
// them a moment after their fsync).
type indexReader struct {
	x    *recIndex
	dir  string
	head indexHead
	tail []indexRow
	tmp  string // the folder of a temporary index, removed by close
	segs *openSegments
}

// openIndexReader opens the index of the archive in dir for reading. One
// that is missing, stale or damaged is built again in its place when no
// relay writes the archive, otherwise (the relay keeps its own) a
// temporary one is built for this reader; it is never trusted further than
// the headers it points at, which are read again from the segments.
func openIndexReader(ctx context.Context, dir string) (*indexReader, error) {
	id, err := archiveID(dir)
	if err != nil {
		return nil, err
	}
	path := IndexFile(dir)
	if x, err := openIndex(path); err == nil {
		if head, err := x.check(ctx, dir, id); err == nil {
			// No relay keeps it: what was written since is indexed now,
			// not read past the head by every reader.
			if unlock, ok := lockIfIdle(dir); ok {
				err = x.follow(ctx, dir, head)
				unlock()
				if err == nil {
					head, err = x.head(ctx)
				}
			}
			if err == nil {
				return newIndexReader(ctx, x, dir, head, "")
			}
		}
		x.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if unlock, ok := lockIfIdle(dir); ok {
		x, err := openIndexFor(ctx, dir)
		unlock()
		if err == nil {
			head, err := x.head(ctx)
			if err != nil {
				x.close()
				return nil, err
			}
			return newIndexReader(ctx, x, dir, head, "")
		}
		if ctx.Err() != nil {
			return nil, err
		}
	}
	// A relay runs (it keeps the index: this one will be right again
	// after its next start), or the index cannot be written beside the
	// archive (a read-only copy): one for this reader alone.
	tmp, err := os.MkdirTemp("", "sealpost-index-")
	if err != nil {
		return nil, err
	}
	x, err := openIndex(filepath.Join(tmp, "index.db"))
	if err == nil {
		if err = x.catchUp(ctx, dir); err != nil {
			x.close()
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("archive: index: %w", err)
	}
	head, err := x.head(ctx)
	if err != nil {
		x.close()
		os.RemoveAll(tmp)
		return nil, err
	}
	return newIndexReader(ctx, x, dir, head, tmp)
}

func newIndexReader(ctx context.Context, x *recIndex, dir string, head indexHead, tmp string) (*indexReader, error) {
	r := &indexReader{x: x, dir: dir, head: head, tmp: tmp, segs: &openSegments{dir: dir, files: map[string]*os.File{}}}
	err := walkRows(ctx, dir, head.seg, head.end, indexBatch, func(rows []indexRow) error {
		r.tail = append(r.tail, rows...)
		return nil
	})
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *indexReader) close() {
	r.segs.close()
	if r.x != nil {
		r.x.close()
	}
	if r.tmp != "" {
		os.RemoveAll(r.tmp)
	}
}

// last is the newest complete record the reader knows of (seq 0: none).
func (r *indexReader) last() indexRow {
	if n := len(r.tail); n > 0 {
		return r.tail[n-1]
	}
	return indexRow{seg: r.head.seg, off: r.head.off, end: r.head.end, hash: r.head.hash, h: header{Seq: r.head.seq}}
}

// lockIfIdle takes the archive's lock when no process holds it, without
// creating the lock file in a folder that has none (a copy: nothing is
// written into it, and no relay can be writing it).
func lockIfIdle(dir string) (unlock func(), ok bool) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return func() {}, true
	}
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}

// recordQuery selects records; empty fields select everything.
type recordQuery struct {
	kinds        []string
	since, until time.Time // until exclusive
	addrs        []string  // keyed address hashes: any of them
	ids          []string
	maxSeq       uint64 // 0: no limit
}

func (q *recordQuery) matches(h *header) bool {
	if len(q.kinds) > 0 && !slices.Contains(q.kinds, h.Kind) {
		return false
	}
	if !q.since.IsZero() && h.Time.Before(q.since) || !q.until.IsZero() && !h.Time.Before(q.until) {
		return false
	}
	if q.maxSeq > 0 && h.Seq > q.maxSeq {
		return false
	}
	if len(q.ids) > 0 && !slices.Contains(q.ids, h.ID) {
		return false
	}
	if len(q.addrs) > 0 && !slices.ContainsFunc(h.Addrs, func(a string) bool { return slices.Contains(q.addrs, a) }) {
		return false
	}
	return true
}

// find returns the records q selects, in chain order, each header read
// again from its segment; a row that does not match its record is
// errIndexStale. Records of segments pruned since are left out.
func (r *indexReader) find(ctx context.Context, q recordQuery) ([]located, error) {
	var where []string
	var args []any
	in := func(col string, vals []string) {
		where = append(where, col+" IN ("+strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")+")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	if len(q.kinds) > 0 {
		in("kind", q.kinds)
	}
	if !q.since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, q.since.UnixNano())
	}
	if !q.until.IsZero() {
		where, args = append(where, "time < ?"), append(args, q.until.UnixNano())
	}
	// The index as it was when the reader took its tail: the relay may
	// have indexed more since, which the tail holds already.
	limit := r.head.seq
	if q.maxSeq > 0 {
		limit = min(limit, q.maxSeq)
	}
	where, args = append(where, "seq <= ?"), append(args, limit)
	if len(q.ids) > 0 {
		in("id", q.ids)
	}
	if len(q.addrs) > 0 {
		where = append(where, "seq IN (SELECT seq FROM addrs WHERE hash IN ("+strings.TrimSuffix(strings.Repeat("?,", len(q.addrs)), ",")+"))")
		for _, a := range q.addrs {
			args = append(args, a)
		}
	}
	query := `SELECT seq, seg, off, hash FROM records`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	if r.x == nil {
		return r.scan(ctx, q)
	}
	rows, err := r.x.db.QueryContext(ctx, query+" ORDER BY seq", args...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errIndexStale, err)
	}
	type hit struct {
		seq       uint64
		seg, hash string
		off       int64
	}
	var hits []hit
	for rows.Next() {
		var h hit
		if err := rows.Scan(&h.seq, &h.seg, &h.off, &h.hash); err != nil {
			rows.Close()
			return nil, fmt.Errorf("%w: %w", errIndexStale, err)
		}
		hits = append(hits, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", errIndexStale, err)
	}
	out := make([]located, 0, len(hits))
	for _, h := range hits {
		l, hash, err := r.segs.locate(h.seg, h.off)
		if errors.Is(err, os.ErrNotExist) {
			continue // pruned
		}
		var rerr *recordError
		if errors.As(err, &rerr) {
			return nil, fmt.Errorf("archive: %w", err)
		}
		if err != nil || hash != h.hash || l.h.Seq != h.seq || !q.matches(&l.h) {
			return nil, fmt.Errorf("%w: record %d is not in %s where it says", errIndexStale, h.seq, h.seg)
		}
		out = append(out, l)
	}
	for _, t := range r.tail {
		if q.matches(&t.h) {
			out = append(out, located{seg: t.seg, h: t.h, payOff: t.end - 32 - t.h.PLen, payLen: t.h.PLen})
		}
	}
	return out, ctx.Err()
}

// locate reads the header of the record at off in seg.
func (o *openSegments) locate(seg string, off int64) (located, string, error) {
	f, err := o.file(seg)
	if err != nil {
		if _, serr := os.Stat(filepath.Join(o.dir, seg)); errors.Is(serr, os.ErrNotExist) {
			return located{}, "", os.ErrNotExist
		}
		return located{}, "", err
	}
	fi, err := f.Stat()
	if err != nil {
		return located{}, "", err
	}
	h, hash, end, err := readHeaderAt(f, seg, off, fi.Size())
	if err != nil {
		return located{}, "", err
	}
	var stored [32]byte
	if _, err := f.ReadAt(stored[:], end-32); err != nil {
		return located{}, "", err
	}
	if hex.EncodeToString(stored[:]) != hash {
		return located{}, "", &recordError{segment: seg, offset: off, seq: h.Seq, msg: "the record's hash does not match its header (changed after it was written; sealpost archive verify)"}
	}
	return located{seg: seg, h: h, payOff: end - 32 - h.PLen, payLen: h.PLen}, hash, nil
}

// findRecords is find with the index built again once when it does not
// match the archive.
func findRecords(ctx context.Context, dir string, q recordQuery) ([]located, error) {
	r, err := openIndexReader(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer r.close()
	return r.findOrRebuild(ctx, q)
}

func (r *indexReader) findOrRebuild(ctx context.Context, q recordQuery) ([]located, error) {
	out, err := r.find(ctx, q)
	if !errors.Is(err, errIndexStale) {
		return out, err
	}
	// A file SQLite finds damaged, or a row that points at the wrong
	// record: built again from the segments, the index is right.
	x, tmp, err := rebuildIndex(ctx, r.dir)
	if err != nil {
		return nil, err
	}
	head, err := x.head(ctx)
	if err != nil {
		x.close()
		return nil, err
	}
	fresh, err := newIndexReader(ctx, x, r.dir, head, tmp)
	if err != nil {
		return nil, err
	}
	r.close()
	*r = *fresh
	return r.find(ctx, q)
}

// rebuildIndex builds the index of dir anew from its segments: in its
// place when no relay runs, else in a temporary folder (tmp) for one reader.
func rebuildIndex(ctx context.Context, dir string) (x *recIndex, tmp string, err error) {
	path := IndexFile(dir)
	if unlock, ok := lockIfIdle(dir); ok {
		defer unlock()
		if err := removeIndexFile(path); err == nil {
			if x, err := openIndexFor(ctx, dir); err == nil {
				return x, "", nil
			}
		}
	}
	if tmp, err = os.MkdirTemp("", "sealpost-index-"); err != nil {
		return nil, "", err
	}
	if x, err = openIndex(filepath.Join(tmp, "index.db")); err == nil {
		if err = x.catchUp(ctx, dir); err != nil {
			x.close()
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, "", fmt.Errorf("archive: index: %w", err)
	}
	return x, tmp, nil
}

// openScanReader is a reader without the index: every query reads every
// record header of every segment (an export that verifies the whole
// archive trusts nothing else).
func openScanReader(dir string) *indexReader {
	return &indexReader{dir: dir, segs: &openSegments{dir: dir, files: map[string]*os.File{}}}
}

// countAfter counts the complete records after record seq, as the
// segments show now.
func (r *indexReader) countAfter(ctx context.Context, seq uint64) (int, error) {
	var n int
	from := r.last()
	if r.x == nil {
		from = indexRow{}
	}
	err := walkRows(ctx, r.dir, from.seg, from.end, indexBatch, func(rows []indexRow) error {
		for _, t := range rows {
			if t.h.Seq > seq {
				n++
			}
		}
		return nil
	})
	if from.h.Seq > seq {
		n += int(from.h.Seq - seq)
	}
	return n, err
}

// scan answers q from the segments, up to the reader's head.
func (r *indexReader) scan(ctx context.Context, q recordQuery) ([]located, error) {
	limit := q.maxSeq
	if limit == 0 {
		limit = ^uint64(0)
	}
	var out []located
	err := walkRows(ctx, r.dir, "", 0, indexBatch, func(rows []indexRow) error {
		for _, t := range rows {
			if t.h.Seq <= limit && q.matches(&t.h) {
				out = append(out, located{seg: t.seg, h: t.h, payOff: t.end - 32 - t.h.PLen, payLen: t.h.PLen})
			}
		}
		return nil
	})
	return out, err
}

// hashOf is the hash of record seq as its segment holds it ("" when it is
// not there), and the first record the index holds.
func (r *indexReader) hashOf(seq uint64) (hash string, first uint64, err error) {
	if r.x == nil {
		return "", 0, errors.New("no index")
	}
	ctx := context.Background()
	var seg string
	var off int64
	var firstN sql.NullInt64
	if err := r.x.db.QueryRowContext(ctx, `SELECT min(seq) FROM records`).Scan(&firstN); err != nil {
		return "", 0, err
	}
	first = uint64(firstN.Int64)
	for _, t := range r.tail {
		if t.h.Seq == seq {
			return t.hash, first, nil
		}
	}
	err = r.x.db.QueryRowContext(ctx, `SELECT seg, off FROM records WHERE seq = ?`, seq).Scan(&seg, &off)
	if errors.Is(err, sql.ErrNoRows) {
		return "", first, nil
	}
	if err != nil {
		return "", first, err
	}
	l, hash, err := r.segs.locate(seg, off)
	if errors.Is(err, os.ErrNotExist) || err == nil && l.h.Seq != seq {
		return "", first, nil
	}
	return hash, first, err
}
