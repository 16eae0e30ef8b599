//go:build sealpost_testclock

package main

import (
	"os"
	"strings"
	"time"
)

// The e2e tests' clock: SEALPOST_TEST_CLOCK names a file holding an offset
// (a Go duration, "62h30m") added to the system clock, read at every call,
// so a test moves sealpost's time by rewriting the file, never by setting
// the machine's. No file, or no variable: the system clock.
func init() {
	path := os.Getenv("SEALPOST_TEST_CLOCK")
	if path == "" {
		return
	}
	clockNow = func() time.Time {
		b, err := os.ReadFile(path)
		if err != nil {
			return time.Now()
		}
		d, err := time.ParseDuration(strings.TrimSpace(string(b)))
		if err != nil {
			return time.Now()
		}
		return time.Now().Add(d)
	}
}
