package archive

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/addr"
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

	mu       sync.Mutex
	messages []*ViewMessage // in chain order
	maxSeq   uint64
	files    *openSegments
}

// OpenView reads the archive in dir with its private key.
func OpenView(dir string, key openpgp.EntityList) (*View, error) {
	v := &View{dir: dir, key: key, files: &openSegments{dir: dir, files: map[string]*os.File{}}}
	if err := v.Refresh(); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
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
	err := walk(v.dir, func(l located) {
		if l.h.Kind == kindMessage && l.h.Seq > v.maxSeq {
			fresh = append(fresh, l)
		}
	})
	if err != nil {
		return err
	}
	for _, l := range fresh {
		body, metaJSON, err := v.files.decrypt(l, v.key)
		if err != nil {
			return fmt.Errorf("record %d: %w", l.h.Seq, err)
		}
		var meta messageMeta
		if err := json.Unmarshal(metaJSON, &meta); err != nil {
			return fmt.Errorf("record %d: metadata: %w", l.h.Seq, err)
		}
		m := &ViewMessage{Seq: l.h.Seq, ID: meta.ID, Time: meta.Time, Direction: meta.Direction, Size: int64(len(body)), loc: l}
		m.Clients = clientsOf(&meta)
		v.messages = append(v.messages, m)
		v.maxSeq = l.h.Seq
	}
	return nil
}

// clientsOf lists the clients a message is from or to: the sender of an
// inbound message, and the recipients of an outbound one that got it
// encrypted or by consent (internal recipients are colleagues).
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
		if d.Protection == rules.Encrypted || d.Protection == rules.Consented {
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
	v.mu.Lock()
	defer v.mu.Unlock()
	body, _, err := v.files.decrypt(m.loc, v.key)
	return body, err
}
