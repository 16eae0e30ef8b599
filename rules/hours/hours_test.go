package hours

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func location(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func windows(t testing.TB, specs ...string) []Window {
	t.Helper()
	var out []Window
	for _, s := range specs {
		ws, err := ParseWindows(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ws...)
	}
	return out
}

func holidays(t testing.TB, loc *time.Location) *Calendar {
	t.Helper()
	f, err := os.Open("testdata/holidays.ics")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := ParseCalendar(f, loc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// office is a weekday practice with a Saturday morning, its holidays
// from the .ics file and an absence.
func office(t testing.TB, zone string) *Schedule {
	loc := location(t, zone)
	absence := Days{Location: loc, Ranges: []DayRange{{From: Date{2026, 12, 29}, Until: Date{2026, 12, 30}, Why: "away"}}}
	return &Schedule{Location: loc, Windows: windows(t, "mon-fri 09:00-12:00", "mon-fri 13:00-17:00", "sat 10:00-12:00"),
		Closures: []Closures{holidays(t, loc), absence}}
}

func TestNextOpening(t *testing.T) {
	ny, berlin := office(t, "America/New_York"), office(t, "Europe/Berlin")
	at := func(s *Schedule, y int, m time.Month, d, h, min int) time.Time {
		return time.Date(y, m, d, h, min, 0, 0, s.Location)
	}
	tests := []struct {
		name     string
		s        *Schedule
		arrival  time.Time
		open     bool
		want     time.Time
		wantUTC  string // the instant, where a zone's offset matters
		wantWhen string
	}{
		{name: "a second before the window opens", s: ny, arrival: at(ny, 2026, 12, 7, 8, 59).Add(59 * time.Second), want: at(ny, 2026, 12, 7, 9, 0)},
		{name: "as the window opens", s: ny, arrival: at(ny, 2026, 12, 7, 9, 0), open: true, want: at(ny, 2026, 12, 7, 9, 0)},
		{name: "the last second of the morning", s: ny, arrival: at(ny, 2026, 12, 7, 11, 59).Add(59 * time.Second), open: true, want: at(ny, 2026, 12, 7, 11, 59).Add(59 * time.Second)},
		{name: "lunch", s: ny, arrival: at(ny, 2026, 12, 7, 12, 0), want: at(ny, 2026, 12, 7, 13, 0)},
		{name: "as the day closes", s: ny, arrival: at(ny, 2026, 12, 7, 17, 0), want: at(ny, 2026, 12, 8, 9, 0)},
		{name: "Friday evening to Saturday morning", s: ny, arrival: at(ny, 2026, 12, 4, 19, 30), want: at(ny, 2026, 12, 5, 10, 0)},
		{name: "Saturday noon to Monday", s: ny, arrival: at(ny, 2026, 12, 5, 12, 0), want: at(ny, 2026, 12, 7, 9, 0)},
		{name: "Christmas Eve evening, Christmas from the .ics rule", s: ny, arrival: at(ny, 2026, 12, 24, 18, 0), want: at(ny, 2026, 12, 26, 10, 0)},
		{name: "Thanksgiving: the fourth Thursday and the Friday", s: ny, arrival: at(ny, 2026, 11, 25, 17, 30), want: at(ny, 2026, 11, 28, 10, 0)},
		{name: "an absence of two days", s: ny, arrival: at(ny, 2026, 12, 28, 17, 0), want: at(ny, 2026, 12, 31, 9, 0)},
		{name: "a cancelled event closes nothing", s: ny, arrival: at(ny, 2026, 12, 7, 10, 0), open: true, want: at(ny, 2026, 12, 7, 10, 0)},
		// New York springs forward on Sunday 8 March 2026: Monday 09:00 is EDT.
		{name: "New York, across spring forward", s: ny, arrival: at(ny, 2026, 3, 7, 12, 0), wantUTC: "2026-03-09T13:00:00Z"},
		{name: "New York, before spring forward", s: ny, arrival: at(ny, 2026, 3, 6, 17, 30), wantUTC: "2026-03-07T15:00:00Z"},
		// ... and falls back on Sunday 1 November 2026: Monday 09:00 is EST.
		{name: "New York, across fall back", s: ny, arrival: at(ny, 2026, 10, 31, 12, 0), wantUTC: "2026-11-02T14:00:00Z"},
		// Berlin springs forward on Sunday 29 March, falls back on Sunday 25 October 2026.
		{name: "Berlin, across spring forward", s: berlin, arrival: at(berlin, 2026, 3, 28, 12, 0), wantUTC: "2026-03-30T07:00:00Z"},
		{name: "Berlin, across fall back", s: berlin, arrival: at(berlin, 2026, 10, 24, 12, 0), wantUTC: "2026-10-26T08:00:00Z"},
		{name: "Berlin, the first Monday's training from the .ics file (TZID)", s: berlin, arrival: at(berlin, 2026, 12, 7, 8, 0), want: at(berlin, 2026, 12, 7, 13, 0)},
		{name: "Berlin, the training's EXDATE", s: berlin, arrival: at(berlin, 2026, 11, 2, 8, 0), want: at(berlin, 2026, 11, 2, 9, 0)},
		{name: "Berlin, a training in a New York schedule's night changes nothing", s: ny, arrival: at(ny, 2026, 12, 7, 8, 0), want: at(ny, 2026, 12, 7, 9, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Open(tc.arrival); got != tc.open {
				t.Errorf("Open(%s) = %v, want %v", tc.arrival, got, tc.open)
			}
			got, ok := tc.s.NextOpening(tc.arrival)
			if !ok {
				t.Fatalf("NextOpening(%s): never", tc.arrival)
			}
			if tc.wantUTC != "" {
				if s := got.UTC().Format(time.RFC3339); s != tc.wantUTC {
					t.Errorf("NextOpening(%s) = %s (%s), want %s", tc.arrival, s, got.In(tc.s.Location), tc.wantUTC)
				}
				return
			}
			if !got.Equal(tc.want) {
				t.Errorf("NextOpening(%s) = %s, want %s", tc.arrival, got.In(tc.s.Location), tc.want)
			}
		})
	}
}

func TestNeverOpens(t *testing.T) {
	loc := location(t, "Europe/Berlin")
	s := &Schedule{Location: loc}
	if _, ok := s.NextOpening(time.Date(2026, 1, 1, 0, 0, 0, 0, loc)); ok {
		t.Error("a schedule without windows opens")
	}
	s = &Schedule{Location: loc, Windows: windows(t, "mon 09:00-10:00"),
		Closures: []Closures{Days{Location: loc, Ranges: []DayRange{{From: Date{2026, 1, 1}, Until: Date{2028, 1, 1}}}}}}
	if got, ok := s.NextOpening(time.Date(2026, 1, 1, 0, 0, 0, 0, loc)); ok {
		t.Errorf("a schedule closed for two years opens at %s", got)
	}
}

// A day a clock change shortens or lengthens is 23 or 25 hours long: the
// windows are wall-clock times, and local midnight is found anew each day.
func TestDSTDayLength(t *testing.T) {
	tests := []struct {
		zone     string
		day      Date
		hours    time.Duration
		midnight string // the next local midnight, UTC
	}{
		{"America/New_York", Date{2026, 3, 8}, 23, "2026-03-09T04:00:00Z"},
		{"America/New_York", Date{2026, 11, 1}, 25, "2026-11-02T05:00:00Z"},
		{"Europe/Berlin", Date{2026, 3, 29}, 23, "2026-03-29T22:00:00Z"},
		{"Europe/Berlin", Date{2026, 10, 25}, 25, "2026-10-25T23:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.zone+" "+tc.day.String(), func(t *testing.T) {
			loc := location(t, tc.zone)
			s := &Schedule{Location: loc, Windows: windows(t, "mon-sun 00:00-24:00")}
			segs := s.segments(tc.day.Start(loc), tc.day.After(1).Start(loc))
			if len(segs) != 1 {
				t.Fatalf("segments: %v", segs)
			}
			if got := segs[0].End.Sub(segs[0].Start); got != tc.hours*time.Hour {
				t.Errorf("the day is %s long, want %dh", got, tc.hours)
			}
			if got := segs[0].End.UTC().Format(time.RFC3339); got != tc.midnight {
				t.Errorf("the day ends at %s, want %s", got, tc.midnight)
			}
		})
	}
}

func TestExpectedReply(t *testing.T) {
	ny := office(t, "America/New_York")
	at := func(y int, m time.Month, d, h, min int) time.Time {
		return time.Date(y, m, d, h, min, 0, 0, ny.Location)
	}
	day24 := Turnaround{Hours: 24}
	tests := []struct {
		name    string
		arrival time.Time
		ta      Turnaround
		want    time.Time
	}{
		{"Friday evening: Saturday morning's close", at(2026, 12, 4, 19, 0), day24, at(2026, 12, 5, 12, 0)},
		{"Monday evening: Tuesday's close", at(2026, 12, 7, 18, 0), day24, at(2026, 12, 8, 17, 0)},
		{"Monday before opening: Tuesday's close", at(2026, 12, 7, 8, 0), day24, at(2026, 12, 8, 17, 0)},
		{"two hours, after the day closed: the next day's close", at(2026, 12, 7, 18, 0), Turnaround{Hours: 2}, at(2026, 12, 8, 17, 0)},
		{"two hours in the morning: that day's close", at(2026, 12, 7, 9, 30), Turnaround{Hours: 2}, at(2026, 12, 7, 17, 0)},
		{"Christmas Eve: Christmas skipped, Saturday counts", at(2026, 12, 24, 10, 0), day24, at(2026, 12, 26, 12, 0)},
		{"during an absence: the first day back", at(2026, 12, 28, 17, 30), day24, at(2026, 12, 31, 17, 0)},
		{"two business days from Friday evening", at(2026, 12, 4, 19, 0), Turnaround{Days: 2}, at(2026, 12, 7, 17, 0)},
		{"one business day on Thanksgiving", at(2026, 11, 26, 10, 0), Turnaround{Days: 1}, at(2026, 11, 28, 12, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ny.ExpectedReply(tc.arrival, tc.ta)
			if !ok || !got.Equal(tc.want) {
				t.Errorf("ExpectedReply(%s, %s) = %s, %v; want %s", tc.arrival.Format("Mon 2 Jan 15:04"), tc.ta, got.In(ny.Location), ok, tc.want)
			}
		})
	}
}

// The example: a weekday practice, a message on Friday evening,
// an answer by Monday's close; on Friday morning the hours run on into
// Monday too.
func TestExpectedReplyWeekdays(t *testing.T) {
	loc := location(t, "America/New_York")
	s := &Schedule{Location: loc, Windows: windows(t, "mon-fri 09:00-17:00")}
	monday := time.Date(2026, 12, 7, 17, 0, 0, 0, loc)
	for _, arrival := range []time.Time{time.Date(2026, 12, 4, 19, 0, 0, 0, loc), time.Date(2026, 12, 4, 10, 0, 0, 0, loc), time.Date(2026, 12, 6, 23, 0, 0, 0, loc)} {
		if got, ok := s.ExpectedReply(arrival, Turnaround{Hours: 24}); !ok || !got.Equal(monday) {
			t.Errorf("from %s: %s, want %s", arrival, got, monday)
		}
	}
	if got, _ := s.ExpectedReply(time.Date(2026, 12, 7, 9, 0, 0, 0, loc), Turnaround{Hours: 24}); !got.Equal(monday.AddDate(0, 0, 1)) {
		t.Errorf("from Monday morning: %s, want Tuesday's close", got)
	}
}

// Hours count as the clock runs: the short day of a spring-forward
// change gives 23, the long one of a fall-back 25.
func TestExpectedReplyAcrossDST(t *testing.T) {
	tests := []struct {
		zone    string
		arrival Date // a Saturday; business days are Saturday and Sunday
		hours   int
		dueDay  Date
	}{
		{"America/New_York", Date{2026, 3, 7}, 47, Date{2026, 3, 8}},
		{"America/New_York", Date{2026, 3, 7}, 48, Date{2026, 3, 14}},
		{"America/New_York", Date{2026, 10, 31}, 49, Date{2026, 11, 1}},
		{"America/New_York", Date{2026, 10, 31}, 50, Date{2026, 11, 7}},
		{"Europe/Berlin", Date{2026, 3, 28}, 47, Date{2026, 3, 29}},
		{"Europe/Berlin", Date{2026, 3, 28}, 48, Date{2026, 4, 4}},
		{"Europe/Berlin", Date{2026, 10, 24}, 49, Date{2026, 10, 25}},
		{"Europe/Berlin", Date{2026, 10, 24}, 50, Date{2026, 10, 31}},
	}
	for _, tc := range tests {
		t.Run(tc.zone+" "+tc.arrival.String(), func(t *testing.T) {
			loc := location(t, tc.zone)
			s := &Schedule{Location: loc, Windows: windows(t, "sat-sun 00:00-24:00")}
			got, ok := s.ExpectedReply(tc.arrival.Start(loc), Turnaround{Hours: tc.hours})
			want := tc.dueDay.After(1).Start(loc)
			if !ok || !got.Equal(want) {
				t.Errorf("%d hours from %s: %s, want the close of %s (%s)", tc.hours, tc.arrival, got.In(loc), tc.dueDay, want)
			}
		})
	}
}

func TestUpcoming(t *testing.T) {
	ny := office(t, "America/New_York")
	got := ny.Upcoming(time.Date(2026, 12, 24, 12, 30, 0, 0, ny.Location), 4)
	var s []string
	for _, sp := range got {
		s = append(s, sp.Start.In(ny.Location).Format("Mon 2 Jan 15:04")+"-"+sp.End.In(ny.Location).Format("15:04"))
	}
	want := "Thu 24 Dec 13:00-17:00, Sat 26 Dec 10:00-12:00, Mon 28 Dec 09:00-12:00, Mon 28 Dec 13:00-17:00"
	if strings.Join(s, ", ") != want {
		t.Errorf("Upcoming = %s\nwant %s", strings.Join(s, ", "), want)
	}
	closed := ny.ClosedAt(time.Date(2026, 12, 25, 12, 0, 0, 0, ny.Location))
	if len(closed) != 1 || closed[0].Why != "Christmas Day" {
		t.Errorf("ClosedAt Christmas = %v", closed)
	}
}

func TestClosedSince(t *testing.T) {
	ny := office(t, "America/New_York")
	at := func(m time.Month, d, h int) time.Time { return time.Date(2026, m, d, h, 0, 0, 0, ny.Location) }
	for _, tc := range []struct{ t, want time.Time }{
		{at(12, 7, 8), at(12, 5, 12)},    // Monday morning: since Saturday noon
		{at(12, 7, 12), at(12, 7, 12)},   // lunch
		{at(12, 25, 10), at(12, 24, 17)}, // Christmas
		{at(12, 30, 10), at(12, 28, 17)}, // the absence
	} {
		if got, ok := ny.ClosedSince(tc.t); !ok || !got.Equal(tc.want) {
			t.Errorf("ClosedSince(%s) = %s %v, want %s", tc.t, got, ok, tc.want)
		}
	}
	if _, ok := ny.ClosedSince(at(12, 7, 10)); ok {
		t.Error("closed while open")
	}
}

func TestParseWindows(t *testing.T) {
	tests := []struct {
		spec, want, err string
	}{
		{spec: "mon-fri 09:00-17:00", want: "1 540-1020,2 540-1020,3 540-1020,4 540-1020,5 540-1020"},
		{spec: "sat 10:00-12:00", want: "6 600-720"},
		{spec: "fri-mon 20:00-24:00", want: "5 1200-1440,6 1200-1440,0 1200-1440,1 1200-1440"},
		{spec: "Mon,Wed 13:00-18:30", want: "1 780-1110,3 780-1110"},
		{spec: "mon 17:00-09:00", err: "end after it starts"},
		{spec: "mon 9:00-17:00", err: "not a time of day"},
		{spec: "mon 09:00-24:01", err: "not a time of day"},
		{spec: "monday 09:00-17:00", err: "not a day"},
		{spec: "mon-fri", err: "want days and a time span"},
		{spec: "mon 09:00", err: "time span"},
	}
	for _, tc := range tests {
		ws, err := ParseWindows(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseWindows(%q) error %v, want %q", tc.spec, err, tc.err)
			}
			continue
		}
		var got []string
		for _, w := range ws {
			got = append(got, strings.Join([]string{strconv.Itoa(int(w.Day)), strconv.Itoa(w.Start) + "-" + strconv.Itoa(w.End)}, " "))
		}
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("ParseWindows(%q) = %v, %v; want %s", tc.spec, got, err, tc.want)
		}
	}
}

func TestParseTurnaround(t *testing.T) {
	for spec, want := range map[string]Turnaround{"24 business hours": {Hours: 24}, "2 Business Days": {Days: 2}, "1 business day": {Days: 1}} {
		if got, err := ParseTurnaround(spec); err != nil || got != want {
			t.Errorf("ParseTurnaround(%q) = %v, %v", spec, got, err)
		}
	}
	for _, bad := range []string{"24 hours", "0 business hours", "24h", "a business day", "24 business weeks"} {
		if _, err := ParseTurnaround(bad); err == nil {
			t.Errorf("ParseTurnaround(%q) accepted", bad)
		}
	}
}

func TestParseCalendarErrors(t *testing.T) {
	loc := location(t, "UTC")
	for name, ics := range map[string]string{
		"not a calendar":        "hello",
		"ends before it starts": "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:x\r\nDTSTART:20260101T100000Z\r\nDTEND:20260101T090000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		"an unknown zone":       "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;TZID=Mars/Olympus:20260101T100000\r\nDTEND;TZID=Mars/Olympus:20260101T110000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		"a bad rule":            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20260101\r\nRRULE:FREQ=SOMETIMES\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
	} {
		if _, err := ParseCalendar(strings.NewReader(ics), loc); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseWindows(f *testing.F) {
	for _, s := range []string{"mon-fri 09:00-17:00", "sat 10:00-12:00", "fri-mon 20:00-24:00", "mon,wed 13:00-18:30", "x", "mon 24:00-24:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		ws, err := ParseWindows(spec)
		if err != nil {
			return
		}
		for _, w := range ws {
			if w.Start < 0 || w.End > 24*60 || w.End <= w.Start || w.Day < 0 || w.Day > 6 {
				t.Fatalf("%q gave %+v", spec, w)
			}
		}
	})
}

func FuzzParseCalendar(f *testing.F) {
	b, err := os.ReadFile("testdata/holidays.ics")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(b))
	f.Add("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20260101\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
	loc, _ := time.LoadLocation("America/New_York")
	f.Fuzz(func(t *testing.T, ics string) {
		c, err := ParseCalendar(strings.NewReader(ics), loc)
		if err != nil {
			return
		}
		from := time.Date(2026, 12, 1, 0, 0, 0, 0, loc)
		for _, sp := range c.Closed(from, from.AddDate(0, 0, 31)) {
			if !sp.End.After(sp.Start) {
				t.Fatalf("an empty or reversed span %v", sp)
			}
		}
	})
}

func FuzzParseTurnaround(f *testing.F) {
	for _, s := range []string{"24 business hours", "2 business days", "1 business day", "0 business hours", "x"} {
		f.Add(s)
	}
	loc, _ := time.LoadLocation("Europe/Berlin")
	s := &Schedule{Location: loc, Windows: windows(f, "mon-fri 09:00-17:00")}
	from := time.Date(2026, 10, 23, 18, 0, 0, 0, loc)
	f.Fuzz(func(t *testing.T, spec string) {
		ta, err := ParseTurnaround(spec)
		if err != nil {
			return
		}
		if (ta.Hours > 0) == (ta.Days > 0) {
			t.Fatalf("%q gave %+v", spec, ta)
		}
		if by, ok := s.ExpectedReply(from, ta); !ok || !by.After(from) || !s.Open(by.Add(-time.Second)) {
			t.Fatalf("%q: the answer by %s, %v", spec, by, ok)
		}
	})
}
