package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"bytes"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/rules/hours"
)

// maxCalendarBytes bounds a holiday calendar fetched by URL.
const maxCalendarBytes = 8 << 20

// fetchCalendars copies the holiday calendars the configuration names by
// https URL into data_dir (config.CalendarCachePath), at start and on
// SIGHUP. A calendar that cannot be fetched, or does not parse, keeps its
// last copy; without one the hours lack its holidays, which the log says.
func fetchCalendars(ctx context.Context, cfg *config.Config, client *http.Client, log *slog.Logger) {
	urls := cfg.CalendarURLs()
	if len(urls) == 0 {
		return
	}
	if err := os.MkdirAll(cfg.CalendarDir(), 0o700); err != nil {
		log.Error("cannot keep holiday calendars", "dir", cfg.CalendarDir(), "err", err)
		return
	}
	for _, url := range urls {
		path := config.CalendarCachePath(cfg.CalendarDir(), url)
		if err := fetchCalendar(ctx, client, url, path); err != nil {
			if _, statErr := os.Stat(path); statErr == nil {
				log.Warn("cannot fetch a holiday calendar; its last copy is used", "url", url, "err", err)
			} else {
				log.Error("cannot fetch a holiday calendar; office hours are without its holidays until it can be", "url", url, "err", err)
			}
			continue
		}
		log.Info("holiday calendar fetched", "url", url)
	}
}

// fetchCalendar fetches one calendar over verified TLS and replaces its
// copy only with one that parses.
func fetchCalendar(ctx context.Context, client *http.Client, url, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the server answered %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxCalendarBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxCalendarBytes {
		return fmt.Errorf("larger than %d MiB", maxCalendarBytes>>20)
	}
	if _, err := hours.ParseCalendar(bytes.NewReader(b), time.UTC); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, b, 0o600)
}
