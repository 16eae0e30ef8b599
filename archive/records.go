package archive

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

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
	h := header{Kind: kindRefusal}
	if r.Recipient != "" {
		h.Addrs = []string{a.addrHash(r.Recipient)}
	}
	return a.submit(ctx, h, payload)
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

// LastConsentID is the highest consent event id in the record.
func (a *Archive) LastConsentID() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastConsent
}
