package archive

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// readHeaderAt reads the record starting at off in f (of size bytes): its
// header, its hash (SHA-256 of the header) and where it ends. The payload
// is not read. A record that is not whole within size is errIncomplete.
func readHeaderAt(f *os.File, name string, off, size int64) (h header, hash string, end int64, err error) {
	var fixed [8]byte
	if size-off < 8 {
		return h, "", 0, errIncomplete
	}
	if _, err := f.ReadAt(fixed[:], off); err != nil {
		return h, "", 0, err
	}
	if string(fixed[:4]) != recordMagic {
		return h, "", 0, &recordError{segment: name, offset: off, msg: "not the start of a record"}
	}
	hl := int64(binary.BigEndian.Uint32(fixed[4:]))
	if hl > maxHeaderLen || size-off < 8+hl+8 {
		return h, "", 0, errIncomplete
	}
	// The header and the payload's length in one read.
	hb := make([]byte, hl+8)
	if _, err := f.ReadAt(hb, off+8); err != nil {
		return h, "", 0, err
	}
	pl := int64(binary.BigEndian.Uint64(hb[hl:]))
	if pl < 0 || pl > maxPayloadLen || size-off < 8+hl+8+pl+32 {
		return h, "", 0, errIncomplete
	}
	if err := json.Unmarshal(hb[:hl], &h); err != nil {
		return h, "", 0, &recordError{segment: name, offset: off, msg: "header does not parse"}
	}
	sum := sha256.Sum256(hb[:hl])
	return h, hex.EncodeToString(sum[:]), off + 8 + hl + 8 + pl + 32, nil
}

// recordAt reads the header of the record at off in segment seg of dir.
func recordAt(dir, seg string, off int64) (h header, hash string, end int64, err error) {
	f, err := os.Open(filepath.Join(dir, seg))
	if err != nil {
		return h, "", 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return h, "", 0, err
	}
	return readHeaderAt(f, seg, off, fi.Size())
}

// walkRows calls f with the complete records of the archive in dir from
// segment seg, byte off on (seg "": from the start), in chain order and in
// slices of at most n. It stops at the first record that is not whole (a
// write in progress, or a torn tail) and between slices when ctx ends.
func walkRows(ctx context.Context, dir, seg string, off int64, n int, f func([]indexRow) error) error {
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	rows := make([]indexRow, 0, n)
	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		if err := f(rows); err != nil {
			return err
		}
		rows = rows[:0]
		return ctx.Err()
	}
	for _, s := range segs {
		if seg != "" && segNumber(s) < segNumber(seg) {
			continue
		}
		from := int64(0)
		if s == seg {
			from = off
		}
		stop, err := walkSegmentRows(dir, s, from, func(r indexRow) error {
			rows = append(rows, r)
			if len(rows) == n {
				return flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
		if stop {
			break
		}
	}
	return flush()
}

// walkSegmentRows hands on the records of one segment from byte from; stop
// says it ended in bytes that are not a whole record.
func walkSegmentRows(dir, seg string, from int64, f func(indexRow) error) (stop bool, err error) {
	file, err := os.Open(filepath.Join(dir, seg))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil // pruned while we looked
		}
		return false, err
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return false, err
	}
	size := fi.Size()
	for off := from; off < size; {
		h, hash, end, err := readHeaderAt(file, seg, off, size)
		if errors.Is(err, errIncomplete) || errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return true, err
		}
		if err := f(indexRow{seg: seg, off: off, end: end, h: h, hash: hash}); err != nil {
			return true, err
		}
		off = end
	}
	return false, nil
}

const indexBatch = 4096

// catchUp adds to the index the records written after its head, to the
// archive's end as it is now; an index that does not match the archive
// (errIndexStale from check) is emptied and built again.
func (x *recIndex) catchUp(ctx context.Context, dir string) error {
	id, err := archiveID(dir)
	if err != nil {
		return err
	}
	head, err := x.check(ctx, dir, id)
	if errors.Is(err, errIndexStale) {
		if err := x.clear(ctx, id); err != nil {
			return err
		}
		head = indexHead{}
	} else if err != nil {
		return err
	}
	return x.follow(ctx, dir, head)
}

// follow indexes the records after head: the segments are read while the
// rows read before are written, on two cores.
func (x *recIndex) follow(ctx context.Context, dir string, head indexHead) error {
	// Only the walk gets a context of its own: SQLite's driver watches a
	// cancellable context with a goroutine per statement, and the relay's
	// indexer, whose context is never cancelled, would start two a row
	// (1,400 at once, 16 MB live, while it caught up with a consent import).
	walkCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []indexRow, 2)
	walked := make(chan error, 1)
	go func() {
		defer close(batches)
		walked <- walkRows(walkCtx, dir, head.seg, head.end, indexBatch, func(rows []indexRow) error {
			select {
			case batches <- append([]indexRow(nil), rows...):
				return nil
			case <-walkCtx.Done():
				return walkCtx.Err()
			}
		})
	}()
	for rows := range batches {
		if err := x.add(ctx, rows); err != nil {
			cancel()
			for range batches {
			}
			<-walked
			return err
		}
	}
	return <-walked
}

// check compares the index with the archive in dir (identified by id):
// its newest record must be where it says, with the hash it says, and
// every segment it finished must still be as long as it was. It reports
// errIndexStale when the index does not describe this archive.
func (x *recIndex) check(ctx context.Context, dir, id string) (indexHead, error) {
	got, err := x.meta(ctx, "archive")
	if err != nil {
		return indexHead{}, fmt.Errorf("%w: %w", errIndexStale, err)
	}
	if got != id {
		return indexHead{}, fmt.Errorf("%w: made for another archive", errIndexStale)
	}
	head, err := x.head(ctx)
	if err != nil || head.seq == 0 {
		return head, err
	}
	h, hash, end, err := recordAt(dir, head.seg, head.off)
	if err != nil || hash != head.hash || end != head.end || h.Seq != head.seq {
		return head, fmt.Errorf("%w: its newest record %d is not in %s where it says", errIndexStale, head.seq, head.seg)
	}
	rows, err := x.db.QueryContext(ctx, `SELECT name, end_off FROM segments`)
	if err != nil {
		return head, fmt.Errorf("%w: %w", errIndexStale, err)
	}
	defer rows.Close()
	indexed := map[string]bool{}
	for rows.Next() {
		var name string
		var end int64
		if err := rows.Scan(&name, &end); err != nil {
			return head, fmt.Errorf("%w: %w", errIndexStale, err)
		}
		indexed[name] = true
		fi, err := os.Stat(filepath.Join(dir, name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			// pruned after its prune record was indexed
		case err != nil:
			return head, err
		case name != head.seg && fi.Size() != end, name == head.seg && fi.Size() < end:
			return head, fmt.Errorf("%w: %s is %d bytes, the index read %d", errIndexStale, name, fi.Size(), end)
		}
	}
	if err := rows.Err(); err != nil {
		return head, fmt.Errorf("%w: %w", errIndexStale, err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		return head, err
	}
	for _, s := range segs {
		if segNumber(s) < segNumber(head.seg) && !indexed[s] {
			return head, fmt.Errorf("%w: %s is not in it", errIndexStale, s)
		}
	}
	return head, nil
}

// Reindex builds the index of the archive in dir again from its segments
// (sealpost archive reindex). It takes the archive's lock: no relay may
// run meanwhile.
func Reindex(ctx context.Context, dir string) (records uint64, err error) {
	lock, err := lockDir(dir)
	if err != nil {
		return 0, err
	}
	defer lock.Close()
	path := IndexFile(dir)
	if err := removeIndexFile(path); err != nil {
		return 0, fmt.Errorf("archive: index: %w", err)
	}
	x, err := openIndex(path)
	if err != nil {
		return 0, fmt.Errorf("archive: index: %w", err)
	}
	defer x.close()
	if err := x.catchUp(ctx, dir); err != nil {
		return 0, fmt.Errorf("archive: index: %w", err)
	}
	err = x.db.QueryRowContext(ctx, `SELECT count(*) FROM records`).Scan(&records)
	return records, err
}

// openIndexFor opens the index of the archive in dir and brings it up to
// the archive's end, building it again when it is missing, damaged or does
// not match. The caller holds the archive's lock.
func openIndexFor(ctx context.Context, dir string) (*recIndex, error) {
	path := IndexFile(dir)
	x, err := openIndex(path)
	if err == nil {
		if err = x.catchUp(ctx, dir); err == nil {
			return x, nil
		}
		x.close()
		if ctx.Err() != nil {
			return nil, err
		}
	}
	// A file SQLite cannot read, or one that failed while catching up: the
	// index is only a cache, start it again.
	if rerr := removeIndexFile(path); rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	if x, err = openIndex(path); err != nil {
		return nil, err
	}
	if err := x.catchUp(ctx, dir); err != nil {
		x.close()
		return nil, err
	}
	return x, nil
}
