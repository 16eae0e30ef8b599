package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/record"
)

// ViewMessage is one archived message as a reader of the record sees it.
type ViewMessage struct {
	Seq       uint64 // the record's place in the chain: stable, increasing
	ID        string
	Time      time.Time
	Direction Direction
	Clients   []string // the clients it is from or to
	Size      int64
	loc       located
}

// View is a read-only index of the archive's messages for a reader with the
// private key (the IMAP view). Only metadata stays in memory; a message's
// bytes are decrypted again when asked for.
type View struct {
	dir string
	key openpgp.EntityList

	mu         sync.Mutex
	messages   []*ViewMessage // in chain order
	maxSeq     uint64
	seen       map[string]int64 // per segment, the end of the records already read
	unreadable []uint64         // message records the key does not open
	files      *openSegments
}

// OpenView reads the archive in dir with its private key.
func OpenView(dir string, key openpgp.EntityList) (*View, error) {
	v := &View{dir: dir, key: key, files: &openSegments{dir: dir, files: map[string]*os.File{}}}
	if err := v.Refresh(); err != nil {
		v.Close()
		return nil, err
	}
	if n := len(v.unreadable); n > 0 && len(v.messages) == 0 {
		v.Close()
		return nil, fmt.Errorf("the key opens none of the archive's %d messages: is it the archive's private key?", n)
	}
	return v, nil
}

// Unreadable lists the message records (by sequence number) that the key
// did not open: records from before a change of archive key, or damaged
// ones (sealpost archive verify tells which). They are left out of the view.
func (v *View) Unreadable() []uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]uint64(nil), v.unreadable...)
}

// Close releases the open segment files.
func (v *View) Close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.files.close()
}

// Refresh adds the messages recorded since the last look (the relay may be
// writing while the view is read).
func (v *View) Refresh() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	var fresh []located
	seen, err := walkFrom(v.dir, v.seen, func(l located) {
		if l.h.Kind == kindMessage && l.h.Seq > v.maxSeq {
			fresh = append(fresh, l)
		}
	})
	if err != nil {
		return err
	}
	v.seen = seen
	v.dropPruned()
	type indexed struct {
		size int64
		meta messageMeta
		err  error
	}
	return inOrder(context.Background(), len(fresh), func(i int) indexed {
		l := fresh[i]
		var r indexed
		var metaJSON []byte
		r.size, metaJSON, r.err = v.files.metadata(l, v.key)
		if r.err == nil {
			r.err = sameMessage(l, metaJSON)
		}
		if r.err == nil {
			r.err = json.Unmarshal(metaJSON, &r.meta)
		}
		return r
	}, func(i int, r indexed) error {
		l := fresh[i]
		v.maxSeq = l.h.Seq
		if r.err != nil {
			v.unreadable = append(v.unreadable, l.h.Seq)
			return nil
		}
		m := &ViewMessage{Seq: l.h.Seq, ID: r.meta.ID, Time: r.meta.Time, Direction: r.meta.Direction, Size: r.size, loc: l}
		m.Clients = clientsOf(&r.meta)
		v.messages = append(v.messages, m)
		return nil
	})
}

// dropPruned leaves out of the view the messages whose segment was pruned
// since they were indexed: past retention, they are not served any more.
func (v *View) dropPruned() {
	gone := map[string]bool{}
	kept := v.messages[:0]
	for _, m := range v.messages {
		seg := m.loc.seg
		if _, known := gone[seg]; !known {
			_, err := os.Stat(filepath.Join(v.dir, seg))
			gone[seg] = errors.Is(err, os.ErrNotExist)
		}
		if !gone[seg] {
			kept = append(kept, m)
		}
	}
	clear(v.messages[len(kept):])
	v.messages = kept
	for seg, g := range gone {
		if g {
			delete(v.seen, seg)
		}
	}
}

// clientsOf lists the clients a message is from or to: the sender of an
// inbound message, and the recipients of an outbound one that got it
// encrypted, sealed or by consent (internal recipients are colleagues).
func clientsOf(m *messageMeta) []string {
	seen := map[string]bool{}
	var out []string
	add := func(a string) {
		n, err := addr.Normalize(a)
		if err == nil && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if m.Direction == Inbound {
		add(m.Sender)
		return out
	}
	for _, d := range m.Decisions {
		if d.Protection == record.Encrypted || d.Protection == record.Sealed || d.Protection == record.Consented {
			add(d.Address)
		}
	}
	sort.Strings(out)
	return out
}

// Messages returns the messages in chain order.
func (v *View) Messages() []*ViewMessage {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]*ViewMessage(nil), v.messages...)
}

// Body returns a message's bytes as archived.
func (v *View) Body(m *ViewMessage) ([]byte, error) {
	if m == nil {
		return nil, errors.New("no such message")
	}
	// Not under v.mu: readers in several sessions decrypt in parallel.
	body, _, err := v.files.decrypt(m.loc, v.key)
	return body, err
}
