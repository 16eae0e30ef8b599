// Package hours is the arithmetic of a practice's time: weekly office
// windows in a time zone, the days it is closed (holidays, an .ics
// calendar, a therapist's absences), whether it is open at an instant, when
// it next opens, and by when a client can expect an answer. It knows
// nothing of mail: every function takes the instant it is asked about, so
// tests and the relay give it the clock they trust.
//
// Wall-clock times are read in the schedule's location and turned into
// instants with time.Date each day anew: a window "09:00-17:00" opens at
// 09:00 local time on both sides of a daylight-saving change, and a day is
// 23 or 25 hours long when the change falls in it.
package hours

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Window is one weekly opening: on Day, from Start to End minutes after
// local midnight (End up to 24*60).
type Window struct {
	Day        time.Weekday
	Start, End int
}

// Span is a stretch of time [Start, End); Why says what it is ("Christmas
// Day", "away: parental leave") where one is known.
type Span struct {
	Start, End time.Time
	Why        string
}

// Closures are the times a schedule is closed beyond its weekly windows.
// Closed returns every span overlapping [from, to), in any order.
type Closures interface {
	Closed(from, to time.Time) []Span
}

// Schedule is a practice's or a therapist's office hours.
type Schedule struct {
	Location *time.Location
	Windows  []Window
	Closures []Closures
}

// horizon bounds how far ahead a schedule is searched: a schedule closed
// for longer than a year is treated as never opening.
const horizon = 400

// Open says whether the schedule is open at t.
func (s *Schedule) Open(t time.Time) bool {
	for _, seg := range s.segments(t, t.Add(time.Second)) {
		if !t.Before(seg.Start) && t.Before(seg.End) {
			return true
		}
	}
	return false
}

// NextOpening is t when the schedule is open at t, else the next instant
// it opens; ok is false when it does not open within about a year.
func (s *Schedule) NextOpening(t time.Time) (next time.Time, ok bool) {
	for _, days := range []int{14, horizon} {
		segs := s.segments(t, s.dayStart(t, days))
		if len(segs) > 0 {
			return maxTime(segs[0].Start, t), true
		}
	}
	return time.Time{}, false
}

// Upcoming lists up to n open spans from t on (the first may have begun
// before t), within about a year.
func (s *Schedule) Upcoming(t time.Time, n int) []Span {
	var out []Span
	from := t
	for _, days := range []int{14, horizon} {
		for _, seg := range s.segments(from, s.dayStart(t, days)) {
			if len(out) == n {
				return out
			}
			out = append(out, seg)
			from = seg.End
		}
	}
	return out
}

// ClosedAt lists the closures (holidays, absences) in force at t.
func (s *Schedule) ClosedAt(t time.Time) []Span {
	var out []Span
	for _, c := range s.Closures {
		for _, sp := range c.Closed(t, t.Add(time.Second)) {
			if !t.Before(sp.Start) && t.Before(sp.End) {
				out = append(out, sp)
			}
		}
	}
	return out
}

// dayStart is local midnight days days after t's day.
func (s *Schedule) dayStart(t time.Time, days int) time.Time {
	y, m, d := t.In(s.Location).Date()
	return time.Date(y, m, d+days, 0, 0, 0, 0, s.Location)
}

// segments are the open spans that overlap [from, to), in order: the
// weekly windows of each day, less every closure. A window that a closure
// cuts in two gives two spans.
func (s *Schedule) segments(from, to time.Time) []Span {
	if len(s.Windows) == 0 || !from.Before(to) {
		return nil
	}
	dayFrom := s.dayStart(from, 0)
	var closed []Span
	for _, c := range s.Closures {
		closed = append(closed, c.Closed(dayFrom, to)...)
	}
	sort.Slice(closed, func(i, j int) bool { return closed[i].Start.Before(closed[j].Start) })
	var out []Span
	for day := 0; ; day++ {
		start := s.dayStart(from, day)
		if !start.Before(to) {
			break
		}
		y, m, d := start.Date()
		for _, w := range s.windowsOn(start.Weekday()) {
			ws := time.Date(y, m, d, 0, w.Start, 0, 0, s.Location)
			we := time.Date(y, m, d, 0, w.End, 0, 0, s.Location)
			for _, open := range subtract(Span{Start: ws, End: we}, closed) {
				if open.End.After(from) && open.Start.Before(to) {
					out = append(out, open)
				}
			}
		}
	}
	return out
}

// windowsOn are the day's windows, earliest first, overlapping ones joined.
func (s *Schedule) windowsOn(day time.Weekday) []Window {
	var ws []Window
	for _, w := range s.Windows {
		if w.Day == day {
			ws = append(ws, w)
		}
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Start < ws[j].Start })
	var out []Window
	for _, w := range ws {
		if n := len(out); n > 0 && w.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, w.End)
			continue
		}
		out = append(out, w)
	}
	return out
}

// subtract is open less every span of closed (sorted by start).
func subtract(open Span, closed []Span) []Span {
	var out []Span
	cur := open
	for _, c := range closed {
		if !c.End.After(cur.Start) || !c.Start.Before(cur.End) {
			continue
		}
		if c.Start.After(cur.Start) {
			out = append(out, Span{Start: cur.Start, End: c.Start})
		}
		cur.Start = maxTime(cur.Start, c.End)
		if !cur.Start.Before(cur.End) {
			return out
		}
	}
	return append(out, cur)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

var dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseWindows reads windows such as "mon-fri 09:00-17:00", "sat
// 10:00-12:00" or "mon,wed 13:00-18:30": days (a range wraps past
// Sunday, "fri-mon"), then one time span that ends after it starts
// (24:00 is the end of the day).
func ParseWindows(spec string) ([]Window, error) {
	days, span, ok := strings.Cut(strings.TrimSpace(spec), " ")
	if !ok {
		return nil, fmt.Errorf("%q: want days and a time span, e.g. \"mon-fri 09:00-17:00\"", spec)
	}
	weekdays, err := parseDays(days)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", spec, err)
	}
	a, b, ok := strings.Cut(strings.TrimSpace(span), "-")
	if !ok {
		return nil, fmt.Errorf("%q: want a time span such as 09:00-17:00", spec)
	}
	start, err := parseClock(a)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", spec, err)
	}
	end, err := parseClock(b)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", spec, err)
	}
	if end <= start {
		return nil, fmt.Errorf("%q: the window must end after it starts (a window past midnight is two: \"fri 20:00-24:00\", \"sat 00:00-02:00\")", spec)
	}
	var out []Window
	for _, d := range weekdays {
		out = append(out, Window{Day: d, Start: start, End: end})
	}
	return out, nil
}

func parseDays(spec string) ([]time.Weekday, error) {
	var out []time.Weekday
	for _, part := range strings.Split(strings.ToLower(spec), ",") {
		a, b, isRange := strings.Cut(part, "-")
		first, ok := dayNames[a]
		if !ok {
			return nil, fmt.Errorf("%q is not a day (mon, tue, wed, thu, fri, sat, sun)", a)
		}
		last := first
		if isRange {
			if last, ok = dayNames[b]; !ok {
				return nil, fmt.Errorf("%q is not a day (mon, tue, wed, thu, fri, sat, sun)", b)
			}
		}
		for d := first; ; d = (d + 1) % 7 {
			out = append(out, d)
			if d == last {
				break
			}
		}
	}
	return out, nil
}

// parseClock reads HH:MM as minutes after midnight, 00:00 to 24:00.
func parseClock(s string) (int, error) {
	hh, mm, ok := strings.Cut(strings.TrimSpace(s), ":")
	h, herr := strconv.Atoi(hh)
	m, merr := strconv.Atoi(mm)
	if !ok || herr != nil || merr != nil || len(hh) != 2 || len(mm) != 2 || h < 0 || m < 0 || m > 59 || h*60+m > 24*60 {
		return 0, fmt.Errorf("%q is not a time of day (HH:MM, 00:00 to 24:00)", s)
	}
	return h*60 + m, nil
}

// ClosedSince is when the closed stretch t falls in began: the end of the
// last open span before t. ok is false when the schedule is open at t; a
// schedule closed for over a year gives a year ago.
func (s *Schedule) ClosedSince(t time.Time) (since time.Time, ok bool) {
	if s.Open(t) {
		return time.Time{}, false
	}
	for _, days := range []int{14, horizon} {
		if segs := s.segments(s.dayStart(t, -days), t); len(segs) > 0 {
			return segs[len(segs)-1].End, true
		}
	}
	return s.dayStart(t, -horizon), true
}
