package archive

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// TimelineEntry is one record about a client as its clear header shows it:
// what an auditor can see of a client's history without the archive key.
// What each message said, and how each copy was protected, stay in the
// encrypted payload (an export with the key shows them).
type TimelineEntry struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`                // message, event, refusal, consent, evidence, activity, hold
	Direction string    `json:"direction,omitempty"` // a message's: outbound or inbound
	Event     string    `json:"event,omitempty"`     // an event's: delivered, bounced ...; an activity's what
	Code      string    `json:"code,omitempty"`      // a refusal's reason code
	Account   string    `json:"account,omitempty"`
	Size      int64     `json:"size"` // the encrypted payload's bytes
}

// ClientTimeline returns the records naming a client's address (by its
// keyed hash) from since on, oldest first, at most limit (0: all); more
// says there were others. It reads the archive's clear headers only.
func ClientTimeline(ctx context.Context, dir, address string, since time.Time, limit int) (entries []TimelineEntry, more bool, err error) {
	hashKey, err := os.ReadFile(filepath.Join(dir, "address-hash.key"))
	if err != nil {
		return nil, false, fmt.Errorf("archive: %w", err)
	}
	found, err := findRecords(ctx, dir, recordQuery{addrs: []string{addrHash(hashKey, address)}, since: since})
	if err != nil {
		return nil, false, fmt.Errorf("archive: %w", err)
	}
	for i, l := range found {
		if limit > 0 && i == limit {
			return entries, true, nil
		}
		entries = append(entries, TimelineEntry{Seq: l.h.Seq, Time: l.h.Time, Kind: l.h.Kind, Direction: l.h.Dir, Event: l.h.Event,
			Code: l.h.Code, Account: l.h.Account, Size: l.h.PLen})
	}
	return entries, false, nil
}
