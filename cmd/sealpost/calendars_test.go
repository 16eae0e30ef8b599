package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/config"
)

const christmasICS = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Christmas Day\r\nDTSTART;VALUE=DATE:20201225\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"

// A calendar named by URL is fetched over verified TLS into data_dir and
// makes the account's hours closed on its holidays; one that stops
// parsing, or a server that fails, leaves the last copy in use.
func TestFetchCalendars(t *testing.T) {
	var body atomic.Value
	body.Store(christmasICS)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/holidays.ics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, body.Load().(string))
	}))
	defer srv.Close()
	dir := t.TempDir()
	toml := `data_dir = "data"
[[account]]
username = "anna"
password_hash = "$2a$04$4lAH5Fu54kJ1gTlaC0UWO.hT6DZU1N8RJTJr4qZ6a3iBRbOf/Y2Xe"
addresses = ["anna@practice.example"]
upstream_username = ""
[policy]
notice = "Confidential."
[hours]
timezone = "UTC"
windows = ["mon-sun 09:00-17:00"]
holidays_ical = "` + srv.URL + `/holidays.ics"
`
	os.WriteFile(filepath.Join(dir, "sealpost.toml"), []byte(toml), 0o600)
	cfg, err := config.Load(filepath.Join(dir, "sealpost.toml"))
	if err != nil {
		t.Fatal(err)
	}
	christmas := time.Date(2026, 12, 25, 12, 0, 0, 0, time.UTC)
	open := func() bool { return cfg.OfficeHours()["anna"].Schedule.Open(christmas) }
	if !open() {
		t.Fatal("closed on Christmas before the calendar was fetched")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fetchCalendars(context.Background(), cfg, srv.Client(), log)
	if open() {
		t.Fatal("open on Christmas with the calendar fetched")
	}
	body.Store("not a calendar")
	path := config.CalendarCachePath(cfg.CalendarDir(), srv.URL+"/holidays.ics")
	if err := fetchCalendar(context.Background(), srv.Client(), srv.URL+"/holidays.ics", path); err == nil {
		t.Error("a file that is no calendar was taken")
	}
	if err := fetchCalendar(context.Background(), srv.Client(), srv.URL+"/gone.ics", path); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a missing calendar: %v", err)
	}
	if err := fetchCalendar(context.Background(), http.DefaultClient, srv.URL+"/holidays.ics", path); err == nil {
		t.Error("a server whose certificate is not trusted was read")
	}
	if open() {
		t.Error("the last good copy was lost")
	}
}
