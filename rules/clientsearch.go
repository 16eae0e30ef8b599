package rules

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/record"
)

// SearchClients returns a page of clients' current standing, in address
// order, for a list a person pages through: every client from after on,
// or those whose address starts with text or (unless text has an @) whose
// name or chart id contains it. next is the address to pass as
// after for the following page, "" at the end. Addresses are found
// through the registry's address indexes and names (in SQLite) through
// the names' trigram index (namedEvents), so a page costs about the same
// with a hundred clients or a hundred thousand.
func (r *Registry) SearchClients(ctx context.Context, text, after string, limit int, now time.Time) (page []ConsentEntry, next string, err error) {
	text = strings.ToLower(strings.TrimSpace(text))
	// Each side of a union walks an index (an address range) or the
	// events' names; SQLite merges the sides in order and stops at the
	// limit.
	lo, hi := after, "\U0010FFFF"
	if text != "" {
		lo, hi = max(after, text), text+"\U0010FFFF"
	}
	op := ">"
	if text != "" && after == "" {
		op = ">=" // the address typed in full is itself a match
	}
	query := `SELECT address FROM consent_addresses WHERE address ` + op + ` ? AND address < ?
		UNION SELECT address FROM passphrase_addresses WHERE address ` + op + ` ? AND address < ?`
	args := []any{lo, hi, lo, hi}
	if text != "" && !strings.Contains(text, "@") {
		like := "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(text) + "%"
		ids, found, err := r.namedEvents(ctx, text, like)
		if err != nil {
			return nil, "", err
		}
		if found {
			in := "-1" // no event: IN () is not SQL
			if len(ids) > 0 {
				in = strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")
			}
			query += `
		UNION SELECT address FROM consent_addresses WHERE event_id IN (` + in + `) AND address > ?
		UNION SELECT address FROM passphrase_addresses WHERE event_id IN (` + in + `) AND address > ?`
			for range 2 {
				args = append(args, ids...)
				args = append(args, after)
			}
		} else {
			query += `
		UNION SELECT a.address FROM consent_events e JOIN consent_addresses a ON a.event_id = e.id
			WHERE lower(e.client) LIKE ? ESCAPE '\' AND a.address > ?
		UNION SELECT a.address FROM consent_events e JOIN passphrase_addresses a ON a.event_id = e.id
			WHERE lower(e.client) LIKE ? ESCAPE '\' AND a.address > ?`
			args = append(args, like, after, like, after)
		}
	}
	query += ` ORDER BY 1 LIMIT ?`
	args = append(args, limit+1)
	addrs, err := r.addresses(ctx, query, args...)
	if err != nil {
		return nil, "", err
	}
	if len(addrs) > limit {
		addrs, next = addrs[:limit], addrs[limit-1]
	}
	for _, a := range addrs {
		st, err := r.Current(ctx, a, now)
		if err != nil {
			return nil, "", err
		}
		page = append(page, listEntry(st))
	}
	return page, next, nil
}

// ExpiringConsents are the consents to unencrypted email still active that
// end within the days given, soonest first, at most limit of them; more
// says whether there are others.
func (r *Registry) ExpiringConsents(ctx context.Context, within, limit int, now time.Time) (out []ConsentEntry, more bool, err error) {
	addrs, err := r.addresses(ctx, `SELECT a.address FROM consent_events e JOIN consent_addresses a ON a.event_id = e.id
		WHERE e.kind = 'given' AND e.expires >= ? AND e.expires <= ? ORDER BY e.expires, a.address`,
		now.Format(dateLayout), now.AddDate(0, 0, within).Format(dateLayout))
	if err != nil {
		return nil, false, err
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			continue
		}
		seen[a] = true
		st, err := r.Current(ctx, a, now)
		if err != nil {
			return nil, false, err
		}
		if st.State == ConsentActive && st.Given != nil && st.Given.Expires != "" {
			if len(out) == limit {
				return out, true, nil
			}
			out = append(out, listEntry(st))
		}
	}
	return out, false, nil
}

func (r *Registry) addresses(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := r.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("consent registry: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("consent registry: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ClientHistory is every consent and passphrase event naming an address,
// oldest first: the consent history the console shows for one client.
func (r *Registry) ClientHistory(ctx context.Context, address string) ([]*record.ConsentEvent, error) {
	n, err := addr.Normalize(address)
	if err != nil {
		return nil, err
	}
	rows, err := r.db.QueryContext(ctx, `SELECT `+eventColumns+` FROM consent_events e WHERE e.id IN
		(SELECT event_id FROM consent_addresses WHERE address = ? UNION SELECT event_id FROM passphrase_addresses WHERE address = ?)
		ORDER BY e.id`, n, n)
	if err != nil {
		return nil, fmt.Errorf("consent registry: %w", err)
	}
	defer rows.Close()
	var out []*record.ConsentEvent
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("consent registry: %w", err)
		}
		ev.Addresses = []string{n}
		out = append(out, ev)
	}
	return out, rows.Err()
}

// EntryOf is an address's standing as a line of a list.
func EntryOf(st ConsentStatus) ConsentEntry { return listEntry(st) }

// Addresses are every address the registry names: clients' (consents,
// passphrases) and professionals' (not whole domains). A refusal's keyed
// hash is checked against them to name the recipient.
func (r *Registry) Addresses(ctx context.Context) ([]string, error) {
	return r.addresses(ctx, `SELECT address FROM consent_addresses UNION SELECT address FROM passphrase_addresses
		UNION SELECT address FROM professional_addresses WHERE address NOT LIKE '@%'`)
}
