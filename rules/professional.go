package rules

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/record"
)

// Professional recipients are not clients: another clinician, a
// psychiatrist the client was referred to, an insurer or billing service
// under a business associate agreement. The practice records them, one
// address or a whole domain, with the evidence of the agreement; they get
// mail in clear (with the notice, and the content rules, which protect the
// client whose information it is), and they are kept apart from clients
// in the registry (professional_addresses), in `consent list` and in the
// record (protection "professional", events professional-given and
// professional-revoked). An address's own entry counts before its
// domain's, so one address of a professional domain can be withdrawn.

// professionalQuery finds the newest professional event of an address
// (?1) or else of its domain (?2, "@domain").
const professionalQuery = `SELECT ` + eventColumns + `, a.address
	FROM professional_addresses a JOIN consent_events e ON e.id = a.event_id
	WHERE a.address IN (?1, ?2) ORDER BY a.address = ?1 DESC, e.id DESC LIMIT 1`

// withAddress scans an event's columns and then the address it was found under.
type withAddress struct {
	rows    *sql.Rows
	address string
}

func (w *withAddress) Scan(dest ...any) error { return w.rows.Scan(append(dest, &w.address)...) }

// professionalStanding fills in st's professional state for st.Address.
func (r *Registry) professionalStanding(ctx context.Context, st *ConsentStatus, now time.Time) error {
	rows, err := r.q.QueryContext(ctx, professionalQuery, st.Address, "@"+addr.DomainOf(st.Address))
	if err != nil {
		return fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
		}
		return nil
	}
	w := &withAddress{rows: rows}
	ev, err := scanEvent(w)
	if err != nil {
		return fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	st.setProfessional(ev, w.address, now)
	return nil
}

// setTarget puts what a professional_addresses row names into ev.
func setTarget(ev *record.ConsentEvent, target string) {
	if d, ok := strings.CutPrefix(target, "@"); ok {
		ev.Domain, ev.Addresses = d, nil
	} else {
		ev.Addresses = []string{target}
	}
}

// NormalizeDomain is a domain as the registry keeps it: lower case, an
// internationalised one as its A-label, without a leading "@".
func NormalizeDomain(domain string) (string, error) {
	d := strings.TrimPrefix(strings.TrimSpace(domain), "@")
	n, err := addr.Normalize("postmaster@" + d)
	if err != nil || d == "" {
		return "", fmt.Errorf("%q is not a mail domain", domain)
	}
	return addr.DomainOf(n), nil
}

// professionalDecision is the decision for a professional recipient on file.
func professionalDecision(d record.Decision, given *record.ConsentEvent) record.Decision {
	ev := *given
	d.Protection, d.Consent = record.Professional, &ev
	d.Reason = fmt.Sprintf("professional recipient on file since %s (%s)", ev.Signed, ev.Evidence)
	if ev.Domain != "" {
		d.Reason += ", for the whole domain " + ev.Domain
	}
	return d
}

// AddProfessional records a professional recipient: ev.Addresses, or
// every address of ev.Domain, with the evidence of the agreement (a BAA, a
// referral) and the date it was signed. It returns the event as stored.
func (r *Registry) AddProfessional(ctx context.Context, ev record.ConsentEvent) (record.ConsentEvent, error) {
	now := time.Now()
	ev.Kind = record.ProfessionalGiven
	ev.Addresses = append([]string(nil), ev.Addresses...)
	var problems []string
	switch {
	case ev.Domain != "" && len(ev.Addresses) > 0:
		problems = append(problems, "give addresses or a domain, not both")
	case ev.Domain != "":
		d, err := NormalizeDomain(ev.Domain)
		if err != nil {
			problems = append(problems, err.Error())
		}
		ev.Domain = d
	default:
		problems = append(problems, normalizeInPlace(ev.Addresses)...)
		if len(ev.Addresses) == 0 {
			problems = append(problems, "no address or domain")
		}
	}
	if ev.Prefer != "" {
		problems = append(problems, "a preference for clear email is a client's; a professional recipient gets clear email anyway unless they have a key")
	}
	problems = append(problems, checkTerms(&ev, now)...)
	if len(problems) > 0 {
		return ev, &ValidationError{Problems: problems}
	}
	err := r.inTx(ctx, func(tx *sql.Tx) error { return insertEvent(ctx, tx, &ev, now) })
	return ev, err
}

func normalizeInPlace(as []string) []string {
	var problems []string
	for i, a := range as {
		n, err := addr.Normalize(a)
		if err != nil {
			problems = append(problems, fmt.Sprintf("address %q: %v", a, err))
			continue
		}
		as[i] = n
	}
	return problems
}

// RevokeProfessional records that a professional recipient is one no
// longer: an address (also one covered by its domain's entry, which then
// no longer covers it), or with domain set, a whole domain's entry.
func (r *Registry) RevokeProfessional(ctx context.Context, address, domain, reason, recordedBy string) (record.ConsentEvent, error) {
	now := time.Now()
	if strings.TrimSpace(recordedBy) == "" {
		return record.ConsentEvent{}, errors.New("who recorded the withdrawal is not known")
	}
	var ev record.ConsentEvent
	var st ConsentStatus
	if domain != "" {
		d, err := NormalizeDomain(domain)
		if err != nil {
			return record.ConsentEvent{}, err
		}
		// "@domain" as the address: both of the query's keys are the domain's entry.
		st = ConsentStatus{Address: "@" + d, ProfessionalState: ConsentNone}
		if err := r.professionalStanding(ctx, &st, now); err != nil {
			return record.ConsentEvent{}, err
		}
		ev = record.ConsentEvent{Domain: d}
	} else {
		var err error
		if st, err = r.Current(ctx, address, now); err != nil {
			return record.ConsentEvent{}, err
		}
		ev = record.ConsentEvent{Addresses: []string{st.Address}}
	}
	what := ev.Domain
	if what == "" {
		what = st.Address
	}
	switch st.ProfessionalState {
	case ConsentNone:
		return record.ConsentEvent{}, fmt.Errorf("%s is not on file as a professional recipient", what)
	case ConsentRevoked:
		return record.ConsentEvent{}, fmt.Errorf("%s was already withdrawn as a professional recipient on %s", what, st.Professional.RecordedAt.Local().Format(dateLayout))
	}
	ev.Kind, ev.Client, ev.Reason, ev.RecordedBy = record.ProfessionalRevoked, st.Professional.Client, reason, recordedBy
	err := r.inTx(ctx, func(tx *sql.Tx) error { return insertEvent(ctx, tx, &ev, now) })
	return ev, err
}

// ProfessionalEntry is one professional recipient's line in `sealpost
// consent list --kind professional`: an address, or a whole domain.
type ProfessionalEntry struct {
	Address    string       `json:"address,omitempty"`
	Domain     string       `json:"domain,omitempty"`
	Name       string       `json:"name,omitempty"`
	State      ConsentState `json:"state"`
	Signed     string       `json:"signed,omitempty"`
	Evidence   string       `json:"evidence,omitempty"`
	Expires    string       `json:"expires,omitempty"`
	RecordedBy string       `json:"recorded_by"`
	RecordedAt time.Time    `json:"recorded_at"`
	Revoked    *time.Time   `json:"revoked,omitempty"`
	Reason     string       `json:"revocation_reason,omitempty"`
}

// ListProfessionals returns every professional address and domain on file
// and active, or with all, withdrawn and expired ones too.
func (r *Registry) ListProfessionals(ctx context.Context, all bool, now time.Time) ([]ProfessionalEntry, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT `+eventColumns+`, a.address FROM professional_addresses a JOIN consent_events e ON e.id = a.event_id
		ORDER BY a.address, e.id DESC`)
	if err != nil {
		return nil, fmt.Errorf("consent registry: %w", err)
	}
	defer rows.Close()
	var out []ProfessionalEntry
	var last string
	var given *record.ConsentEvent // the newest professional-given event of the target being read
	w := &withAddress{rows: rows}
	for rows.Next() {
		ev, err := scanEvent(w)
		if err != nil {
			return nil, err
		}
		if w.address == last {
			if given == nil && ev.Kind == record.ProfessionalGiven && len(out) > 0 && out[len(out)-1].Revoked != nil {
				fillGiven(&out[len(out)-1], ev)
				given = ev
			}
			continue
		}
		last, given = w.address, nil
		e := ProfessionalEntry{State: ConsentActive, RecordedBy: ev.RecordedBy, RecordedAt: ev.RecordedAt}
		if d, ok := strings.CutPrefix(w.address, "@"); ok {
			e.Domain = d
		} else {
			e.Address = w.address
		}
		if ev.Kind == record.ProfessionalRevoked {
			t := ev.RecordedAt
			e.State, e.Revoked, e.Reason, e.Name = ConsentRevoked, &t, ev.Reason, ev.Client
		} else {
			given = ev
			fillGiven(&e, ev)
			if expired(ev.Expires, now) {
				e.State = ConsentExpired
			}
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// By domain, a domain's own entry before its addresses'.
	slices.SortStableFunc(out, func(a, b ProfessionalEntry) int {
		key := func(e ProfessionalEntry) string {
			if e.Domain != "" {
				return e.Domain + "\x00"
			}
			return addr.DomainOf(e.Address) + "\x01" + e.Address
		}
		return strings.Compare(key(a), key(b))
	})
	if all {
		return out, nil
	}
	active := out[:0]
	for _, e := range out {
		if e.State == ConsentActive {
			active = append(active, e)
		}
	}
	return active, nil
}

func fillGiven(e *ProfessionalEntry, ev *record.ConsentEvent) {
	e.Name, e.Signed, e.Evidence, e.Expires = ev.Client, ev.Signed, ev.Evidence, ev.Expires
	if e.Revoked == nil {
		e.RecordedBy, e.RecordedAt = ev.RecordedBy, ev.RecordedAt
	}
}
