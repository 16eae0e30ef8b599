package hours

import (
	"fmt"
	"strings"
	"time"
)

// Date is a day of the calendar, without a time or a zone.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// ParseDate reads YYYY-MM-DD.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
	if err != nil {
		return Date{}, fmt.Errorf("%q is not a date (YYYY-MM-DD)", s)
	}
	return DateOf(t), nil
}

// DateOf is t's day where t is.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return Date{y, m, d}
}

func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.Year, d.Month, d.Day) }

// Start is the day's local midnight in loc.
func (d Date) Start(loc *time.Location) time.Time {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, loc)
}

// After is the day n days later.
func (d Date) After(n int) Date {
	return DateOf(time.Date(d.Year, d.Month, d.Day+n, 12, 0, 0, 0, time.UTC))
}

// Before says whether d comes before e.
func (d Date) Before(e Date) bool { return d.String() < e.String() }

// DayRange is a run of whole days closed, From to Until inclusive, in the
// schedule's location: a holiday, or a therapist's absence.
type DayRange struct {
	From, Until Date
	Why         string
}

// Days are closures of whole days in one location.
type Days struct {
	Location *time.Location
	Ranges   []DayRange
}

// Closed implements Closures.
func (ds Days) Closed(from, to time.Time) []Span {
	var out []Span
	for _, r := range ds.Ranges {
		sp := Span{Start: r.From.Start(ds.Location), End: r.Until.After(1).Start(ds.Location), Why: r.Why}
		if sp.Start.Before(to) && sp.End.After(from) {
			out = append(out, sp)
		}
	}
	return out
}

// AwayEffect is what an absence does, in the words `sealpost away` and the
// console both use, so a therapist reads the same promise in either.
const AwayEffect = "office hours are closed on those days: held mail to clients waits for the first day back, and the acknowledgement gives an answer date counted from it"

// AwaySentence says who is away when, as `sealpost away` confirms it.
func AwaySentence(account, from, until string) string {
	return fmt.Sprintf("%s is away from %s to %s, both included", account, from, until)
}
