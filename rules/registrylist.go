package rules

import (
	"context"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/record"
)

// listPage is how many addresses List reads at a time.
const listPage = 1000

// List returns every address's current standing: only active consents
// and passphrases on file, or with all, revoked and expired consents and
// removed passphrases too. It reads the registry a page at a time
// (ListPage), three queries a page rather than three an address.
func (r *Registry) List(ctx context.Context, all bool, now time.Time) ([]ConsentEntry, error) {
	var out []ConsentEntry
	after := ""
	for {
		page, next, err := r.ListPage(ctx, all, now, after, listPage)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		after = next
	}
}

// ListPage is List for at most limit addresses after the address after
// ("": from the first), in address order; next is the address to go on
// after ("" when there are no more).
func (r *Registry) ListPage(ctx context.Context, all bool, now time.Time, after string, limit int) (entries []ConsentEntry, next string, err error) {
	rows, err := r.db.QueryContext(ctx, `SELECT address FROM (SELECT address FROM consent_addresses WHERE address > ?1
		UNION SELECT address FROM passphrase_addresses WHERE address > ?1) AS addresses ORDER BY 1 LIMIT ?2`, after, limit)
	if err != nil {
		return nil, "", fmt.Errorf("consent registry: %w", err)
	}
	var addrs []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			rows.Close()
			return nil, "", err
		}
		addrs = append(addrs, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(addrs) == 0 {
		return nil, "", err
	}
	last := addrs[len(addrs)-1]
	consents, err := r.eventsByAddress(ctx, "consent_addresses", after, last)
	if err != nil {
		return nil, "", err
	}
	passphrases, err := r.eventsByAddress(ctx, "passphrase_addresses", after, last)
	if err != nil {
		return nil, "", err
	}
	for _, a := range addrs {
		st := standing(a, consents[a], passphrases[a], now)
		if !all && st.State != ConsentActive && st.Passphrase == nil {
			continue
		}
		entries = append(entries, listEntry(st))
	}
	if len(addrs) == limit {
		next = last
	}
	return entries, next, nil
}

// eventsByAddress reads the events table names for the addresses after
// from up to to, newest first for each address.
func (r *Registry) eventsByAddress(ctx context.Context, table, from, to string) (map[string][]*record.ConsentEvent, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT a.address, `+eventColumns+` FROM `+table+` a JOIN consent_events e ON e.id = a.event_id
		WHERE a.address > ? AND a.address <= ? ORDER BY a.address, e.id DESC`, from, to)
	if err != nil {
		return nil, fmt.Errorf("consent registry: %w", err)
	}
	defer rows.Close()
	out := map[string][]*record.ConsentEvent{}
	for rows.Next() {
		var a string
		ev, err := scanEvent(prefixed{rows, &a})
		if err != nil {
			return nil, err
		}
		out[a] = append(out[a], ev)
	}
	return out, rows.Err()
}

// prefixed scans a first column into addr, the rest as scanEvent does.
type prefixed struct {
	s    scanner
	addr *string
}

func (p prefixed) Scan(dest ...any) error { return p.s.Scan(append([]any{p.addr}, dest...)...) }

// standing is an address's standing from its consent events and its
// passphrase events, newest first, as Current decides it.
func standing(address string, consents, passphrases []*record.ConsentEvent, now time.Time) ConsentStatus {
	st := ConsentStatus{Address: address, State: ConsentNone, ProfessionalState: ConsentNone}
	if len(passphrases) > 0 {
		if p := passphrases[0]; p.Kind == record.PassphraseSet {
			st.Passphrase = p
		} else {
			st.PassphraseRemoved = p
		}
	}
	if len(consents) == 0 {
		return st
	}
	last := consents[0]
	if last.Kind == record.ConsentRevoked {
		st.State, st.Revoked = ConsentRevoked, last
		if len(consents) > 1 && consents[1].Kind == record.ConsentGiven {
			st.Given = consents[1]
		}
		return st
	}
	st.Given = last
	if expired(last.Expires, now) {
		st.State = ConsentExpired
	} else {
		st.State = ConsentActive
	}
	return st
}
