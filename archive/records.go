package archive

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/record"
)

// addrHash is a keyed hash of an address: lets export and holds find a
// client's records without the address being on disk in clear.
func (a *Archive) addrHash(s string) string { return addrHash(a.hashKey, s) }

func addrHash(key []byte, s string) string {
	n, err := addr.Normalize(s)
	if err != nil {
		n = strings.ToLower(strings.TrimSpace(s))
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(n))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// messageMeta is what an archived message's payload says about it.
type messageMeta struct {
	Message
	Subject   string `json:"subject"`
	From      string `json:"from"`
	MessageID string `json:"message_id"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
}

// RecordMessage archives a message with its decisions. It returns once the
// record is on disk (fsynced).
func (a *Archive) RecordMessage(ctx context.Context, m Message, body io.Reader) error {
	meta := &messageMeta{Message: m}
	payload, _, err := a.encrypt(meta, body)
	if err != nil {
		return err
	}
	h := header{Kind: kindMessage, ID: m.ID, Dir: string(m.Direction)}
	seen := map[string]bool{}
	for _, d := range m.Decisions {
		if x := a.addrHash(d.Address); !seen[x] {
			seen[x] = true
			h.Addrs = append(h.Addrs, x)
		}
	}
	if m.Direction == Inbound && m.Sender != "" {
		h.Addrs = append(h.Addrs, a.addrHash(m.Sender))
	}
	return a.submit(ctx, h, payload)
}

// MessagesRecorded says which of ids have a message record. The relay asks
// after a crash about messages it spooled while their record was being
// written: only those whose record is here were ever answered 250. Every
// segment is read if need be (newest first, where such records are), so a
// record is never missed.
func (a *Archive) MessagesRecorded(ctx context.Context, ids []string) (map[string]bool, error) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	found := map[string]bool{}
	segs, err := listSegments(a.dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	for i := len(segs) - 1; i >= 0 && len(found) < len(want); i-- {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := scanHeaders(filepath.Join(a.dir, segs[i]), func(h *header, _ []byte) {
			if h.Kind == kindMessage && want[h.ID] {
				found[h.ID] = true
			}
		})
		// The segment being written may end in a record still in progress.
		if err != nil && !errors.Is(err, errIncomplete) {
			return nil, fmt.Errorf("archive: %w", err)
		}
	}
	return found, nil
}

// RecordEvent archives a later fact about a message.
func (a *Archive) RecordEvent(ctx context.Context, e Event) error {
	payload, _, err := a.encrypt(e, nil)
	if err != nil {
		return err
	}
	h := header{Kind: kindEvent, ID: e.MessageID, Event: string(e.Kind)}
	for _, r := range e.Recipients {
		h.Addrs = append(h.Addrs, a.addrHash(r))
	}
	return a.submit(ctx, h, payload)
}

// RecordRefusal archives a refused recipient or message.
func (a *Archive) RecordRefusal(ctx context.Context, r RefusalRecord) error {
	payload, _, err := a.encrypt(r, nil)
	if err != nil {
		return err
	}
	h := header{Kind: kindRefusal, ID: r.Ref, Code: r.Code, Account: r.Account}
	if r.Recipient != "" {
		h.Addrs = []string{a.addrHash(r.Recipient)}
	}
	return a.submit(ctx, h, payload)
}

// RefusalFound is a refusal record as its clear header shows it: all that
// `sealpost refusals show` needs, readable without the archive key.
type RefusalFound struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Ref     string    `json:"ref"`
	Code    string    `json:"code"`
	Account string    `json:"account"`
	// Recipient is set when the refusal was for a recipient: whether an
	// address is it (Is) can be told, the address itself is not kept in clear.
	Recipient bool `json:"recipient"`
	addrHash  string
	hashKey   []byte
}

// Is says whether address is the refused recipient.
func (r RefusalFound) Is(address string) bool {
	return r.addrHash != "" && hmac.Equal([]byte(addrHash(r.hashKey, address)), []byte(r.addrHash))
}

// FindRefusals returns the refusal records in the archive folder dir with
// reference ref, or with ref "" those since the time given, oldest first.
// It only reads: it works beside a running relay and on a copy.
func FindRefusals(dir, ref string, since time.Time) ([]RefusalFound, error) {
	hashKey, err := os.ReadFile(filepath.Join(dir, "address-hash.key"))
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	q := recordQuery{kinds: []string{kindRefusal}, since: since}
	if ref != "" {
		q = recordQuery{kinds: []string{kindRefusal}, ids: []string{ref}}
	}
	found, err := findRecords(context.Background(), dir, q)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	var out []RefusalFound
	for _, l := range found {
		h := &l.h
		f := RefusalFound{Seq: h.Seq, Time: h.Time, Ref: h.ID, Code: h.Code, Account: h.Account, hashKey: hashKey}
		if len(h.Addrs) == 1 {
			f.Recipient, f.addrHash = true, h.Addrs[0]
		}
		out = append(out, f)
	}
	return out, nil
}

// RecordConsent archives an event of the consent registry.
func (a *Archive) RecordConsent(ctx context.Context, ev record.ConsentEvent) error {
	payload, _, err := a.encrypt(ev, nil)
	if err != nil {
		return err
	}
	h := header{Kind: kindConsent, Consent: ev.ID}
	for _, x := range ev.Addresses {
		h.Addrs = append(h.Addrs, a.addrHash(x))
	}
	if err := a.submit(ctx, h, payload); err != nil {
		return err
	}
	a.mu.Lock()
	if ev.ID > a.lastConsent {
		a.lastConsent = ev.ID
	}
	a.mu.Unlock()
	return nil
}

// RecordConsents archives events of the consent registry, in order, handed
// to the writer together so that they share its fsyncs (a batch of up to
// 512 records is one). It returns once all are durable, or at the first
// that is not; the events before it are recorded.
func (a *Archive) RecordConsents(ctx context.Context, evs []record.ConsentEvent) error {
	a.waitForIndexer(ctx)
	reqs := make([]*appendReq, 0, len(evs))
	var sendErr error
	for _, ev := range evs {
		payload, _, err := a.encrypt(ev, nil)
		if err != nil {
			sendErr = err
			break
		}
		h := header{Kind: kindConsent, Consent: ev.ID}
		for _, x := range ev.Addresses {
			h.Addrs = append(h.Addrs, a.addrHash(x))
		}
		r := &appendReq{h: h, payload: payload, done: make(chan error, 1)}
		if err := a.send(ctx, r); err != nil {
			payload.close()
			sendErr = err
			break
		}
		reqs = append(reqs, r)
	}
	// Once handed over, records are written whatever the caller does: wait.
	var recorded int64
	var err error
	for i, r := range reqs {
		if rerr := <-r.done; rerr != nil && err == nil {
			err = rerr
		} else if err == nil {
			recorded = evs[i].ID
		}
	}
	a.mu.Lock()
	a.lastConsent = max(a.lastConsent, recorded)
	a.mu.Unlock()
	if err != nil {
		return err
	}
	return sendErr
}

// indexBacklog is how many batches a bulk copy lets the indexer fall
// behind. Past its queue (64 batches) the indexer reads the records from
// the segments again, thousands of rows at a time; a copy of 100,000
// consents that outran it held 10 to 16 MB there, which the collector let
// grow to 80 MB of RSS. Held back, the copy goes at the indexer's pace,
// which costs it no time: both run at once on two cores.
const indexBacklog = 4

// waitForIndexer holds a bulk copy back while the indexer is more than
// indexBacklog batches behind, a second at most (an indexer that fails
// still moves on; the next start reads what it missed).
func (a *Archive) waitForIndexer(ctx context.Context) {
	if a.indexQ == nil {
		return
	}
	limit := time.NewTimer(time.Second)
	defer limit.Stop()
	for {
		a.indexMu.Lock()
		moved := a.indexMoved
		a.indexMu.Unlock()
		if len(a.indexQ) <= indexBacklog {
			return
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return
		case <-limit.C:
			return
		}
	}
}

// LastConsentID is the highest consent event id in the record.
func (a *Archive) LastConsentID() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastConsent
}
