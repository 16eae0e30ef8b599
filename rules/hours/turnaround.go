package hours

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Turnaround is the practice's promise of an answer: N hours counted on
// business days, or N business days. A business day is a day the
// schedule is open at all: weekends, holidays and absences do not count.
type Turnaround struct {
	Hours int // "24 business hours"
	Days  int // "2 business days"
}

// ParseTurnaround reads "N business hours" or "N business days" (N from 1;
// "hour" and "day" also).
func ParseTurnaround(s string) (Turnaround, error) {
	f := strings.Fields(strings.ToLower(s))
	if len(f) != 3 || f[1] != "business" {
		return Turnaround{}, fmt.Errorf("%q: want \"N business hours\" or \"N business days\"", s)
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 1 {
		return Turnaround{}, fmt.Errorf("%q: the number must be a whole number from 1", s)
	}
	// The limits keep the answer date within the year a schedule is
	// searched: a promise further out is no promise.
	switch f[2] {
	case "hours", "hour":
		if n > 1000 {
			return Turnaround{}, fmt.Errorf("%q: at most 1000 business hours", s)
		}
		return Turnaround{Hours: n}, nil
	case "days", "day":
		if n > 60 {
			return Turnaround{}, fmt.Errorf("%q: at most 60 business days", s)
		}
		return Turnaround{Days: n}, nil
	}
	return Turnaround{}, fmt.Errorf("%q: want \"N business hours\" or \"N business days\"", s)
}

func (t Turnaround) String() string {
	if t.Days > 0 {
		return fmt.Sprintf("%d business days", t.Days)
	}
	return fmt.Sprintf("%d business hours", t.Hours)
}

// ExpectedReply is by when a message arriving at t can expect an answer:
// the close of office hours on the business day the turnaround ends.
// Hours are counted on business days only, whole clock hours from t; days
// are whole business days after t's own. A therapist answers in their
// office hours, so the promise is the end of that day's last window (the
// next business day's, when that day closed before t). ok is false when
// the schedule does not open often enough within about a year.
func (s *Schedule) ExpectedReply(t time.Time, ta Turnaround) (time.Time, bool) {
	days := 0
	remaining := time.Duration(ta.Hours) * time.Hour
	due := false
	for day := 0; day < horizon; day++ {
		start, end := s.dayStart(t, day), s.dayStart(t, day+1)
		open := s.segments(start, end)
		if len(open) == 0 {
			continue
		}
		closing := open[len(open)-1].End
		switch {
		case due:
		case ta.Days > 0:
			if day > 0 {
				days++
			}
			due = days == ta.Days
		default:
			from := maxTime(start, t)
			avail := end.Sub(from)
			due = remaining <= avail
			remaining -= avail
		}
		if due && closing.After(t) {
			return closing, true
		}
	}
	return time.Time{}, false
}
