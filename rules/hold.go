package rules

import (
	"context"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules/hours"
)

// OfficeHours are an account's hours as the policy uses them.
type OfficeHours struct {
	// Schedule holds the windows, the zone and the holidays; the
	// account's absences are added from the registry when it is asked.
	Schedule *hours.Schedule
	// Hold: mail to clients submitted outside the hours waits for them.
	Hold bool
	// Turnaround is the promise the acknowledgement names; zero: none.
	Turnaround hours.Turnaround
}

// SetHours gives the policy every account's office hours, by username;
// an account without an entry has none. Replaced on reload.
func (p *Policy) SetHours(byAccount map[string]OfficeHours) { p.hours.Store(&byAccount) }

// Hours is account's office hours with its absences from the registry;
// ok is false when it has none.
func (p *Policy) Hours(ctx context.Context, account string) (OfficeHours, bool, error) {
	m := p.hours.Load()
	if m == nil {
		return OfficeHours{}, false, nil
	}
	oh, ok := (*m)[account]
	if !ok || oh.Schedule == nil {
		return OfficeHours{}, false, nil
	}
	reg, keepsAbsences := p.registry.(absences)
	if !keepsAbsences {
		return oh, true, nil
	}
	away, err := reg.AbsenceDays(ctx, account, oh.Schedule.Location)
	if err != nil {
		return oh, true, err
	}
	s := *oh.Schedule
	s.Closures = append(append([]hours.Closures(nil), s.Closures...), away)
	oh.Schedule = &s
	return oh, true, nil
}

// Zone is the time zone of account's office hours, as the last reload
// set them, without Hours' registry read: what "today" is for the days of
// an absence. ok is false when the account has no office hours.
func (p *Policy) Zone(account string) (loc *time.Location, ok bool) {
	m := p.hours.Load()
	if m == nil {
		return nil, false
	}
	oh, ok := (*m)[account]
	if !ok || oh.Schedule == nil || oh.Schedule.Location == nil {
		return nil, false
	}
	return oh.Schedule.Location, true
}

// absences are an account's days away as closures of its hours
// (implemented by *Registry).
type absences interface {
	AbsenceDays(ctx context.Context, account string, loc *time.Location) (hours.Days, error)
}

// holds says whether account's mail to clients may be held at all.
func (p *Policy) holds(account string) bool {
	m := p.hours.Load()
	if m == nil {
		return false
	}
	oh, ok := (*m)[account]
	return ok && oh.Hold && oh.Schedule != nil
}

// nowMarker starts a subject whose sender wants it sent at once, outside
// office hours too.
const nowMarker = "[now]"

// withNowMarker adds to edit the removal of the "[now]" marker from the
// subject of a message whose sender's mail may be held: no recipient sees
// it, and the record says it was there (Decision.SentNow). *marked says,
// once the header was written, whether it was.
func (p *Policy) withNowMarker(sub Submission, edit headerEdit) (headerEdit, *bool) {
	marked := new(bool)
	if sub.Automatic || !p.holds(sub.Account) {
		return edit, marked
	}
	return func(h *textproto.Header) {
		*marked = takeNowMarker(h)
		if edit != nil {
			edit(h)
		}
	}, marked
}

// takeNowMarker removes "[now]" (any case) from the start of the
// subject, encoded or not, and says whether it was there.
func takeNowMarker(h *textproto.Header) bool {
	raw := h.Get("Subject")
	subject, err := new(mime.WordDecoder).DecodeHeader(raw)
	if err != nil {
		subject = raw
	}
	trimmed := strings.TrimLeft(subject, " \t")
	if len(trimmed) < len(nowMarker) || !strings.EqualFold(trimmed[:len(nowMarker)], nowMarker) {
		return false
	}
	rest := strings.TrimLeft(trimmed[len(nowMarker):], " \t")
	if isASCII(rest) {
		h.Set("Subject", rest)
	} else {
		h.Set("Subject", mime.QEncoding.Encode("utf-8", rest))
	}
	return true
}

// heldFormat is how a hold's end is written for the sender: in the
// schedule's zone, as a mail client shows a date.
const heldFormat = "Mon 2 Jan 15:04"

// holdCopies holds the copies to clients of a message submitted outside
// its sender's office hours, where the account holds mail, until the
// hours next open. Colleagues' copies are never held; nor are those of a
// message marked "[now]", or to a client whose consent says any time
// (--no-hold). A copy with recipients of both kinds becomes two, sharing
// its file. The decisions say what was held and what was sent now.
func (p *Policy) holdCopies(ctx context.Context, sub Submission, res *Result, marked bool) error {
	if sub.Automatic || !p.holds(sub.Account) {
		return nil
	}
	for i, d := range res.Decisions {
		if marked && d.Protection != record.Internal {
			res.Decisions[i].SentNow = record.SentNowMarker
		}
	}
	oh, _, err := p.Hours(ctx, sub.Account)
	if err != nil {
		return err
	}
	now := p.now()
	if marked || oh.Schedule.Open(now) {
		return nil
	}
	until, ok := oh.Schedule.NextOpening(now)
	if !ok {
		return nil // a schedule that never opens holds nothing for ever
	}
	held := map[string]bool{}
	for i, d := range res.Decisions {
		if d.Protection == record.Internal {
			continue
		}
		st, err := p.registry.Current(ctx, d.Address, now)
		if err != nil {
			return err
		}
		if st.State == ConsentActive && st.Given != nil && st.Given.NoHold {
			res.Decisions[i].SentNow = record.SentNowNoHold
			continue
		}
		res.Decisions[i].HeldUntil = until
		held[d.Recipient] = true
	}
	if len(held) == 0 {
		return nil
	}
	res.Copies = splitHeld(res.Copies, res.Decisions, held, until)
	res.Held = until.In(oh.Schedule.Location).Format(heldFormat) + " (" + heldBecause(oh.Schedule, now) + ")"
	return nil
}

// heldBecause says in the 250's words why the copies wait: the closure in
// force (an absence, a holiday by its calendar name) or the office hours.
// A name goes into an SMTP reply line only as short printable ASCII.
func heldBecause(s *hours.Schedule, now time.Time) string {
	closed := s.ClosedAt(now)
	if len(closed) == 0 {
		return "office hours"
	}
	why := textutil.OneLine(closed[0].Why)
	if why == "" || len(why) > 60 || strings.IndexFunc(why, func(r rune) bool { return r < ' ' || r > '~' }) >= 0 {
		return "closed"
	}
	return why
}

// splitHeld gives the held recipients of each copy a copy of their own
// (the same file) that waits until until.
func splitHeld(copies []Copy, ds []record.Decision, held map[string]bool, until time.Time) []Copy {
	protection := map[string]record.Protection{}
	for _, d := range ds {
		protection[d.Recipient] = d.Protection
	}
	var out []Copy
	for _, c := range copies {
		var now, later []string
		for _, r := range c.Recipients {
			if held[r] {
				later = append(later, r)
			} else {
				now = append(now, r)
			}
		}
		for k, part := range [][]string{now, later} {
			if len(part) == 0 {
				continue
			}
			pc := c
			pc.Recipients = part
			if len(now) > 0 && len(later) > 0 && c.Protection != record.Encrypted && c.Protection != record.Sealed {
				pc.Protection = ""
				for _, r := range part {
					pc.Protection = clearerOf(pc.Protection, protection[r])
				}
			}
			if k == 1 {
				pc.HoldUntil = until
			}
			out = append(out, pc)
		}
	}
	return out
}
