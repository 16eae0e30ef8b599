package hours

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-ical"
	"github.com/teambition/rrule-go"
)

// Calendar is a holiday calendar read from an iCalendar (.ics) file: each
// event closes the schedule for its duration, every time it recurs. A
// whole-day event (DTSTART;VALUE=DATE) closes whole days in the
// schedule's location; a timed one closes its hours in its own zone
// (TZID, or UTC).
type Calendar struct {
	events []calendarEvent
}

type calendarEvent struct {
	summary string
	start   time.Time
	// allDayDays is the length of a whole-day event in days; 0 for a
	// timed event, which lasts length.
	allDayDays int
	length     time.Duration
	recurs     *rrule.Set // nil: once
}

// maxCalendarEvents bounds what one file may hold.
const maxCalendarEvents = 10000

// ParseCalendar reads an .ics file. Events are read in loc where they
// name no zone (whole-day and floating times). Cancelled events, and
// events without a start, are left out; an event that cannot be read is
// an error naming it.
func ParseCalendar(r io.Reader, loc *time.Location) (*Calendar, error) {
	cal, err := decodeCalendar(r)
	if err != nil {
		return nil, fmt.Errorf("calendar: %w", err)
	}
	evs := cal.Events()
	if len(evs) > maxCalendarEvents {
		return nil, fmt.Errorf("calendar: %d events, more than %d", len(evs), maxCalendarEvents)
	}
	c := &Calendar{}
	for i, ev := range evs {
		ce, skip, err := readEvent(ev, loc)
		if err != nil {
			name := ""
			if p := ev.Props.Get(ical.PropSummary); p != nil {
				name = " " + fmt.Sprintf("%q", p.Value)
			}
			return nil, fmt.Errorf("calendar: event %d%s: %w", i+1, name, err)
		}
		if !skip {
			c.events = append(c.events, ce)
		}
	}
	return c, nil
}

// decodeCalendar decodes a calendar, taking a panic of the decoder for
// the error it is: go-ical's parameter parser indexes past the end of a
// line such as "X;Y=" (FuzzParseCalendar found it), and a holiday file
// from a URL must not stop the relay.
func decodeCalendar(r io.Reader) (cal *ical.Calendar, err error) {
	defer func() {
		if p := recover(); p != nil {
			cal, err = nil, fmt.Errorf("not an iCalendar file (the decoder failed: %v)", p)
		}
	}()
	return ical.NewDecoder(io.LimitReader(r, 8<<20)).Decode()
}

func readEvent(ev ical.Event, loc *time.Location) (calendarEvent, bool, error) {
	if st, err := ev.Status(); err == nil && st == ical.EventCancelled {
		return calendarEvent{}, true, nil
	}
	startProp := ev.Props.Get(ical.PropDateTimeStart)
	if startProp == nil {
		return calendarEvent{}, true, nil
	}
	start, err := startProp.DateTime(loc)
	if err != nil {
		return calendarEvent{}, false, err
	}
	if y := start.Year(); y < 1900 || y > 2200 {
		return calendarEvent{}, false, fmt.Errorf("starts in the year %d", y)
	}
	ce := calendarEvent{start: start}
	if p := ev.Props.Get(ical.PropSummary); p != nil {
		ce.summary, _ = p.Text()
	}
	allDay := startProp.ValueType() == ical.ValueDate || (startProp.ValueType() == ical.ValueDefault && len(startProp.Value) == len("20060102"))
	end, err := ev.DateTimeEnd(loc)
	if err != nil {
		return calendarEvent{}, false, err
	}
	if allDay {
		ce.allDayDays = 1
		if ev.Props.Get(ical.PropDateTimeEnd) != nil || ev.Props.Get(ical.PropDuration) != nil {
			ce.allDayDays = int((end.Sub(start) + 12*time.Hour) / (24 * time.Hour))
		}
		if ce.allDayDays < 1 || ce.allDayDays > 366 {
			return calendarEvent{}, false, errors.New("a whole-day event must last 1 to 366 days")
		}
	} else {
		ce.length = end.Sub(start)
		if ce.length <= 0 || ce.length > 366*24*time.Hour {
			return calendarEvent{}, false, errors.New("an event must end after it starts, within a year")
		}
	}
	// A holiday recurs daily at most: a rule by the hour or minute would
	// be expanded into millions of closures for every message.
	if opt, err := ev.Props.RecurrenceRule(); err != nil {
		return calendarEvent{}, false, err
	} else if opt != nil && (opt.Freq == rrule.HOURLY || opt.Freq == rrule.MINUTELY || opt.Freq == rrule.SECONDLY) {
		return calendarEvent{}, false, errors.New("a closure may recur at most daily")
	}
	if ce.recurs, err = ev.RecurrenceSet(loc); err != nil {
		return calendarEvent{}, false, err
	}
	if _, err := occurrences(ce.recurs, start, start.AddDate(2, 0, 0)); err != nil {
		return calendarEvent{}, false, err
	}
	return ce, false, nil
}

// Closed implements Closures.
func (c *Calendar) Closed(from, to time.Time) []Span {
	var out []Span
	for _, ev := range c.events {
		// An occurrence that began up to its length before from still
		// overlaps it.
		back := ev.length
		if ev.allDayDays > 0 {
			back = time.Duration(ev.allDayDays+1) * 24 * time.Hour
		}
		starts := []time.Time{ev.start}
		if ev.recurs != nil {
			// A rule that ParseCalendar expanded but that fails here
			// closes nothing rather than stopping the relay.
			starts, _ = occurrences(ev.recurs, from.Add(-back), to)
		}
		for _, st := range starts {
			sp := ev.span(st)
			if sp.Start.Before(to) && sp.End.After(from) {
				out = append(out, sp)
			}
		}
	}
	return out
}

// span is one occurrence: whole days run from local midnight to local
// midnight, whatever a daylight-saving change does to their length.
func (ev calendarEvent) span(start time.Time) Span {
	if ev.allDayDays > 0 {
		y, m, d := start.Date()
		loc := start.Location()
		return Span{Start: time.Date(y, m, d, 0, 0, 0, 0, loc), End: time.Date(y, m, d+ev.allDayDays, 0, 0, 0, 0, loc), Why: ev.summary}
	}
	return Span{Start: start, End: start.Add(ev.length), Why: ev.summary}
}

// occurrences expands a recurrence between from and to, taking a panic of
// rrule-go for the error it is (it indexes past the end of its tables for
// some rules, such as BYDAY=1TH on a DTSTART in the year 0).
func occurrences(set *rrule.Set, from, to time.Time) (starts []time.Time, err error) {
	defer func() {
		if p := recover(); p != nil {
			starts, err = nil, fmt.Errorf("the recurrence rule cannot be expanded (%v)", p)
		}
	}()
	return set.Between(from, to, true), nil
}
