package archive

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/internal/fsutil"
)

// appendReq is what the writer goroutine is handed: a record, or an
// operation to run between records (a prune).
type appendReq struct {
	h       header
	payload *payload
	op      func() error // instead of a record: run in the writer (prune)
	// sign, when set, signs the header once its place in the chain is known
	sign func(*header)
	done chan error
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
	var rows []indexRow
	if a.indexQ != nil {
		rows = make([]indexRow, 0, len(batch))
	}
	for _, r := range batch {
		seq++
		r.h.Seq, r.h.Prev, r.h.Time, r.h.Node = seq, last, now, a.opts.Node
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
		size := 8 + int64(len(hb)) + 8 + r.h.PLen + 32
		last = hex.EncodeToString(sum[:])
		if rows != nil {
			off := a.segSize + written
			rows = append(rows, indexRow{seg: a.segName, off: off, end: off + size, h: r.h, hash: last})
		}
		written += size
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
	// After the fsync, never before: the index is never ahead of the archive.
	a.toIndex(rows)
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
	if err := a.newSegmentFile(segNumber(a.segName) + 1); err != nil {
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

// send hands r to the writer, or says why it cannot: errClosed once Close
// has begun, or ctx's error. Close waits for sends under way, so reqs is
// never closed under a sender.
func (a *Archive) send(ctx context.Context, r *appendReq) error {
	a.sendMu.RLock()
	defer a.sendMu.RUnlock()
	if a.closed {
		return errClosed
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

// CloseSegment seals the segment being written now and starts the next
// (tests and admins use it before a prune; segments also close by size).
func (a *Archive) CloseSegment(ctx context.Context) error {
	return a.do(ctx, a.rotate)
}
