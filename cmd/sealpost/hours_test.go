package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/config"
)

func TestCheckOfficeHours(t *testing.T) {
	dir := t.TempDir()
	mondays := "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Team day\r\nDTSTART;VALUE=DATE:20260105\r\nRRULE:FREQ=WEEKLY;BYDAY=MO\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	os.WriteFile(filepath.Join(dir, "mondays.ics"), []byte(mondays), 0o600)
	toml := `data_dir = "data"
[[account]]
username = "anna"
password_hash = "$2a$04$4lAH5Fu54kJ1gTlaC0UWO.hT6DZU1N8RJTJr4qZ6a3iBRbOf/Y2Xe"
addresses = ["anna@practice.example"]
upstream_username = ""
[account.hours]
windows = ["mon 09:00-17:00"]
holidays_ical = "mondays.ics"
[[account]]
username = "ben"
password_hash = "$2a$04$4lAH5Fu54kJ1gTlaC0UWO.hT6DZU1N8RJTJr4qZ6a3iBRbOf/Y2Xe"
addresses = ["ben@practice.example"]
upstream_username = ""
[account.hours]
holidays = ["2026-12-07", "2026-12-14"]
[[account]]
username = "carl"
password_hash = "$2a$04$4lAH5Fu54kJ1gTlaC0UWO.hT6DZU1N8RJTJr4qZ6a3iBRbOf/Y2Xe"
addresses = ["carl@practice.example"]
upstream_username = ""
[account.hours]
holidays_ical = "https://calendars.example/holidays.ics"
[policy]
notice = "Confidential."
[hours]
timezone = "Europe/Berlin"
windows = ["mon 09:00-17:00"]
hold_outside_hours = true
`
	os.WriteFile(filepath.Join(dir, "sealpost.toml"), []byte(toml), 0o600)
	cfg, err := config.Load(filepath.Join(dir, "sealpost.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range checkOfficeHours(cfg, time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)) {
		line := "ok   " + r.what
		if r.warn {
			line = "WARN " + r.what + ": " + r.err.Error()
		}
		lines = append(lines, line)
	}
	got := strings.Join(lines, "\n")
	for _, want := range []string{
		"WARN office hours of anna in Europe/Berlin, mail to clients held outside them: they do not open within a year",
		"WARN office hours of ben in Europe/Berlin, mail to clients held outside them: they next open Mon 21 Dec 2026 09:00",
		"ok   office hours of carl in Europe/Berlin, mail to clients held outside them",
		"WARN holiday calendar https://calendars.example/holidays.ics: not fetched yet",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q:\n%s", want, got)
		}
	}
}
