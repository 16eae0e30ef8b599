package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func hoursConfig(t *testing.T, sections string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ics := "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Christmas Day\r\nDTSTART;VALUE=DATE:20201225\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	os.WriteFile(filepath.Join(dir, "holidays.ics"), []byte(ics), 0o600)
	os.WriteFile(filepath.Join(dir, "pw"), []byte("x\n"), 0o600)
	toml := `data_dir = "d"
[[account]]
username = "anna"
password_hash = "` + string(hash) + `"
addresses = ["anna@practice.example"]
upstream_username = "anna@practice.example"
upstream_password_file = "pw"
` + sections + `
[policy]
notice = "Confidential."
`
	path := filepath.Join(dir, "sealpost.toml")
	os.WriteFile(path, []byte(toml), 0o600)
	return Load(path)
}

// An account's [account.hours] replaces the practice's keys it sets and
// keeps the others; the .ics file is read relative to the config.
func TestHoursMerged(t *testing.T) {
	cfg, err := hoursConfig(t, `[account.hours]
windows = ["tue 12:00-14:00"]
hold_outside_hours = true

[hours]
timezone = "Europe/Berlin"
windows = ["mon-fri 09:00-17:00"]
holidays = ["2026-12-24"]
holidays_ical = "holidays.ics"
turnaround = "24 business hours"
`)
	if err != nil {
		t.Fatal(err)
	}
	oh, ok := cfg.OfficeHours()["anna"]
	if !ok || !oh.Hold || oh.Turnaround.Hours != 24 || oh.Schedule.Location.String() != "Europe/Berlin" {
		t.Fatalf("anna's hours: %+v", oh)
	}
	berlin := oh.Schedule.Location
	tue := time.Date(2026, 12, 8, 12, 30, 0, 0, berlin)
	if !oh.Schedule.Open(tue) || oh.Schedule.Open(tue.Add(-3*time.Hour)) {
		t.Error("the account's windows are not the ones used")
	}
	if oh.Schedule.Open(time.Date(2026, 12, 29, 12, 30, 0, 0, berlin)) != true {
		t.Error("an ordinary Tuesday is closed")
	}
	if next, _ := oh.Schedule.NextOpening(time.Date(2026, 12, 22, 15, 0, 0, 0, berlin)); !next.Equal(time.Date(2026, 12, 29, 12, 0, 0, 0, berlin)) {
		t.Errorf("after Tuesday 22 Dec, the next opening is %s; Tuesday 29th, Christmas from the .ics in between", next)
	}
}

func TestHoursProblemsNamedByKey(t *testing.T) {
	tests := []struct{ name, toml, want string }{
		{"hold without windows", "[hours]\nhold_outside_hours = true\n", ":9: hours.hold_outside_hours: holding mail outside office hours needs windows"},
		{"no zone", "[hours]\nwindows = [\"mon-fri 09:00-17:00\"]\n", "hours.timezone: must be set"},
		{"unknown zone", "[hours]\ntimezone = \"Mars/Olympus\"\nwindows = [\"mon-fri 09:00-17:00\"]\n", ":9: hours.timezone: \"Mars/Olympus\""},
		{"bad window", "[hours]\ntimezone = \"UTC\"\nwindows = [\"weekdays 9-5\"]\n", ":10: hours.windows: \"weekdays 9-5\""},
		{"bad holiday", "[hours]\ntimezone = \"UTC\"\nwindows = [\"mon 09:00-10:00\"]\nholidays = [\"25.12.2026\"]\n", ":11: hours.holidays: \"25.12.2026\" is not a date"},
		{"missing calendar", "[hours]\ntimezone = \"UTC\"\nwindows = [\"mon 09:00-10:00\"]\nholidays_ical = \"nowhere.ics\"\n", "hours.holidays_ical: open"},
		{"calendar over http", "[hours]\ntimezone = \"UTC\"\nwindows = [\"mon 09:00-10:00\"]\nholidays_ical = \"http://example.com/h.ics\"\n", "fetched over https only"},
		{"bad turnaround", "[hours]\ntimezone = \"UTC\"\nwindows = [\"mon 09:00-10:00\"]\nturnaround = \"1 day\"\n", "hours.turnaround: \"1 day\""},
		{"an acknowledgement's language", "[account.autoreply]\ntext = \"Thanks.\"\nlanguage = \"fr\"\n", "account[0].autoreply.language: \"fr\""},
		{"an account's problem", "[account.hours]\nwindows = [\"mon 10:00-09:00\"]\n[hours]\ntimezone = \"UTC\"\n", "account[0].hours.windows: \"mon 10:00-09:00\": the window must end after it starts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hoursConfig(t, tc.toml)
			var es Errors
			if !errors.As(err, &es) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant %q", err, tc.want)
			}
		})
	}
}
