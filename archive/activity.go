package archive

import (
	"context"
	"fmt"
	"time"
)

// kindActivity is a change someone made to what sealpost decides or
// delivers (a consent, a key, a queued message, their own login codes):
// in the chain, so the record of who changed what cannot be edited.
const kindActivity = "activity"

// Activity is one such change. Who, what, its object and where from are in
// the record's clear header, for the console's activity log without the
// archive key; addresses only in its encrypted payload (their keyed hashes
// in the header, for an export by client).
type Activity struct {
	Time      time.Time `json:"time"`
	Who       string    `json:"who"`
	Role      string    `json:"role,omitempty"`
	What      string    `json:"what"`             // e.g. consent-recorded, key-removed, queue-drop
	Object    string    `json:"object,omitempty"` // a consent id, a key's fingerprint, a queue id
	From      string    `json:"from,omitempty"`   // the client's IP address
	Addresses []string  `json:"addresses,omitempty"`
}

// RecordActivity archives a change; it returns once it is on disk.
func (a *Archive) RecordActivity(ctx context.Context, act Activity) error {
	if act.Time.IsZero() {
		act.Time = a.opts.Now().UTC()
	}
	payload, _, err := a.encrypt(act, nil)
	if err != nil {
		return err
	}
	h := header{Kind: kindActivity, ID: act.Object, Account: act.Who, Event: act.What, From: act.From}
	for _, x := range act.Addresses {
		h.Addrs = append(h.Addrs, a.addrHash(x))
	}
	return a.submit(ctx, h, payload)
}

// ActivityFound is an activity record as its clear header shows it.
type ActivityFound struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`
	What   string    `json:"what"`
	Object string    `json:"object,omitempty"`
	From   string    `json:"from,omitempty"`
}

// FindActivity returns the activity records since a time, oldest first,
// from the clear headers: no archive key is needed.
func FindActivity(dir string, since time.Time) ([]ActivityFound, error) {
	found, err := findRecords(context.Background(), dir, recordQuery{kinds: []string{kindActivity}, since: since})
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	out := make([]ActivityFound, 0, len(found))
	for _, l := range found {
		out = append(out, ActivityFound{Seq: l.h.Seq, Time: l.h.Time, Who: l.h.Account, What: l.h.Event, Object: l.h.ID, From: l.h.From})
	}
	return out, nil
}
