package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DayCounts is Summary with the refusals counted per account as well: what
// the console's Today page shows, for an admin and for one therapist.
type DayCounts struct {
	Summary
	RefusedBy map[string]int // refusal records by the account refused
}

// CountSince counts the records since a time as SummarySince does, from
// the index's rows rather than the records' headers: a page that shows a
// day's numbers on every visit counts a million-record archive in one
// indexed query, and reads from the segments only the records written
// after the index's head. The rows are not read again from their segments
// (as find does before anything is acted on): openIndexReader has checked
// that the index describes this archive up to its head, and a count only
// shows. Records of segments pruned since are left out, as find leaves
// them out.
func CountSince(ctx context.Context, dir string, since time.Time) (DayCounts, error) {
	r, err := openIndexReader(ctx, dir)
	if err != nil {
		return DayCounts{}, fmt.Errorf("archive: %w", err)
	}
	defer r.close()
	c := DayCounts{RefusedBy: map[string]int{}}
	rows, err := r.x.db.QueryContext(ctx, `SELECT seg, kind, dir, event, account, count(*) FROM records
		WHERE kind IN (?, ?, ?) AND time >= ? AND seq <= ? GROUP BY seg, kind, dir, event, account`,
		kindMessage, kindEvent, kindRefusal, since.UnixNano(), r.head.seq)
	if err != nil {
		return DayCounts{}, fmt.Errorf("archive: index: %w", err)
	}
	defer rows.Close()
	present := map[string]bool{}
	for rows.Next() {
		var seg string
		var h header
		var n int
		if err := rows.Scan(&seg, &h.Kind, &h.Dir, &h.Event, &h.Account, &n); err != nil {
			return DayCounts{}, fmt.Errorf("archive: index: %w", err)
		}
		ok, seen := present[seg]
		if !seen {
			_, err := os.Stat(filepath.Join(dir, seg))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return DayCounts{}, fmt.Errorf("archive: %w", err)
			}
			ok = err == nil
			present[seg] = ok
		}
		if ok {
			c.add(&h, n)
		}
	}
	if err := rows.Err(); err != nil {
		return DayCounts{}, fmt.Errorf("archive: index: %w", err)
	}
	q := recordQuery{kinds: []string{kindMessage, kindEvent, kindRefusal}, since: since}
	for _, t := range r.tail {
		if q.matches(&t.h) {
			c.add(&t.h, 1)
		}
	}
	return c, ctx.Err()
}

// add counts n records with header h's kind, direction, event and account,
// in SummarySince's categories.
func (c *DayCounts) add(h *header, n int) {
	switch {
	case h.Kind == kindMessage && h.Dir == string(Inbound):
		c.Received += n
	case h.Kind == kindMessage:
		c.Sent += n
	case h.Kind == kindEvent && h.Event == string(Delivered):
		c.Delivered += n
	case h.Kind == kindEvent && h.Event == string(Bounced):
		c.Bounced += n
	case h.Kind == kindRefusal:
		c.Refused += n
		c.RefusedBy[h.Account] += n
	}
}
