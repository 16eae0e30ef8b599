package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/hours"
)

// HoursConfig is [hours] for the practice, and [account.hours] for one
// therapist: a key an account sets replaces the practice's, one it leaves
// out is the practice's.
type HoursConfig struct {
	Timezone string   `toml:"timezone"` // IANA name, e.g. America/New_York
	Windows  []string `toml:"windows"`  // "mon-fri 09:00-17:00", "sat 10:00-12:00"
	Holidays []string `toml:"holidays"` // YYYY-MM-DD
	// HolidaysICal is an .ics file of closures (recurring events too).
	HolidaysICal string `toml:"holidays_ical"`
	// HoldOutsideHours: mail to clients submitted outside the hours waits
	// for them (colleagues' goes at once).
	HoldOutsideHours *bool  `toml:"hold_outside_hours"`
	Turnaround       string `toml:"turnaround"` // "24 business hours", "2 business days"
}

// merged is the account's hours over the practice's.
func (h HoursConfig) merged(account *HoursConfig) HoursConfig {
	if account == nil {
		return h
	}
	m := h
	if account.Timezone != "" {
		m.Timezone = account.Timezone
	}
	if account.Windows != nil {
		m.Windows = account.Windows
	}
	if account.Holidays != nil {
		m.Holidays = account.Holidays
	}
	if account.HolidaysICal != "" {
		m.HolidaysICal = account.HolidaysICal
	}
	if account.HoldOutsideHours != nil {
		m.HoldOutsideHours = account.HoldOutsideHours
	}
	if account.Turnaround != "" {
		m.Turnaround = account.Turnaround
	}
	return m
}

// HoursProblem is a problem with a key of [hours] or [account.hours].
type HoursProblem struct{ Key, Msg string }

// officeHours builds the hours h describes, with every problem by key.
// No windows: none (nil), unless something needs them.
func (h HoursConfig) officeHours(cacheDir string) (*rules.OfficeHours, []HoursProblem) {
	var problems []HoursProblem
	bad := func(key, format string, args ...any) {
		problems = append(problems, HoursProblem{key, fmt.Sprintf(format, args...)})
	}
	hold := h.HoldOutsideHours != nil && *h.HoldOutsideHours
	if len(h.Windows) == 0 {
		if hold {
			bad("hold_outside_hours", "holding mail outside office hours needs windows")
		}
		if h.Turnaround != "" {
			bad("turnaround", "a turnaround is counted over office hours: set windows")
		}
		return nil, problems
	}
	loc := time.Local
	if h.Timezone == "" {
		bad("timezone", "must be set with windows (an IANA name such as America/New_York)")
	} else if l, err := time.LoadLocation(h.Timezone); err != nil {
		bad("timezone", "%q is not a time zone this machine knows (an IANA name such as Europe/Berlin)", h.Timezone)
	} else {
		loc = l
	}
	s := &hours.Schedule{Location: loc}
	for _, w := range h.Windows {
		ws, err := hours.ParseWindows(w)
		if err != nil {
			bad("windows", "%v", err)
		}
		s.Windows = append(s.Windows, ws...)
	}
	days := hours.Days{Location: loc}
	for _, d := range h.Holidays {
		date, err := hours.ParseDate(d)
		if err != nil {
			bad("holidays", "%v", err)
			continue
		}
		days.Ranges = append(days.Ranges, hours.DayRange{From: date, Until: date, Why: "holiday"})
	}
	s.Closures = append(s.Closures, days)
	if h.HolidaysICal != "" {
		cal, err := readCalendar(h.HolidaysICal, cacheDir, loc)
		switch {
		case errors.Is(err, errNotFetched):
			// serve fetches it; until then the hours are without it
		case err != nil:
			bad("holidays_ical", "%v", err)
		default:
			s.Closures = append(s.Closures, cal)
		}
	}
	oh := &rules.OfficeHours{Schedule: s, Hold: hold}
	if h.Turnaround != "" {
		ta, err := hours.ParseTurnaround(h.Turnaround)
		if err != nil {
			bad("turnaround", "%v", err)
		}
		oh.Turnaround = ta
	}
	return oh, problems
}

// errNotFetched: a calendar named by URL has no copy in data_dir yet.
var errNotFetched = errors.New("not fetched yet")

// readCalendar reads an .ics file, or for an https URL the copy serve
// keeps in cacheDir (CalendarCachePath).
func readCalendar(path, cacheDir string, loc *time.Location) (*hours.Calendar, error) {
	if strings.Contains(path, "://") {
		if !strings.HasPrefix(path, "https://") {
			return nil, fmt.Errorf("%s: a calendar is fetched over https only", path)
		}
		path = CalendarCachePath(cacheDir, path)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, errNotFetched
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return hours.ParseCalendar(f, loc)
}

// OfficeHours is every account's office hours, by username; accounts
// without windows have none. A calendar named by URL is read from the
// copy serve fetched (CalendarURLs); without one, the hours lack it.
func (c *Config) OfficeHours() map[string]rules.OfficeHours {
	out := map[string]rules.OfficeHours{}
	for _, a := range c.Accounts {
		if oh, _ := c.Hours.merged(a.Hours).officeHours(c.CalendarDir()); oh != nil {
			out[a.Username] = *oh
		}
	}
	return out
}

// CalendarDir holds the copies of holiday calendars named by URL.
func (c *Config) CalendarDir() string { return filepath.Join(c.DataDir, "calendars") }

// CalendarCachePath is where the copy of the calendar at url is kept.
func CalendarCachePath(dir, url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(dir, hex.EncodeToString(sum[:8])+".ics")
}

// CalendarURLs are the holiday calendars [hours] and [account.hours] name
// by URL, each once.
func (c *Config) CalendarURLs() []string {
	var out []string
	add := func(h *HoursConfig) {
		if h != nil && strings.HasPrefix(h.HolidaysICal, "https://") && !slices.Contains(out, h.HolidaysICal) {
			out = append(out, h.HolidaysICal)
		}
	}
	add(&c.Hours)
	for _, a := range c.Accounts {
		add(a.Hours)
	}
	return out
}

// validateHours checks [hours] and each [account.hours].
func (c *Config) validateHours(bad reporter) {
	c.Hours.HolidaysICal = c.relative(c.Hours.HolidaysICal)
	for _, p := range problemsOf(c.Hours.officeHours(c.CalendarDir())) {
		bad("hours."+p.Key, "%s", p.Msg)
	}
	for i, a := range c.Accounts {
		if r := a.Autoreply; r != nil && r.Language != "" && !rules.AcknowledgementLanguage(r.Language) {
			bad(fmt.Sprintf("account[%d].autoreply.language", i), "%q: the answer date can be written in en or de", r.Language)
		}
		if a.Hours == nil {
			continue
		}
		a.Hours.HolidaysICal = c.relative(a.Hours.HolidaysICal)
		for _, p := range problemsOf(c.Hours.merged(a.Hours).officeHours(c.CalendarDir())) {
			bad(fmt.Sprintf("account[%d].hours.%s", i, p.Key), "%s", p.Msg)
		}
	}
}

func problemsOf(_ *rules.OfficeHours, ps []HoursProblem) []HoursProblem { return ps }

// relative is p relative to the config file's folder.
func (c *Config) relative(p string) string {
	if p != "" && !filepath.IsAbs(p) && !strings.Contains(p, "://") {
		return filepath.Join(filepath.Dir(c.Path), p)
	}
	return p
}
