package main

import (
	"runtime/debug"
	"testing"
)

// TestDuringBulkCopy: overlapping copies keep the lower target until the
// last one ends, then the relay's own comes back; with GOGC set by the
// admin nothing changes.
func TestDuringBulkCopy(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(300))
	defer func(old int) { bulkGCPercent = old }(bulkGCPercent)
	percent := func() int {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p
	}
	for _, tc := range []struct {
		name              string
		bulk, during, end int
	}{
		{"the relay's GOGC", 100, 100, 300},
		{"GOGC set by the admin", 0, 300, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bulkGCPercent = tc.bulk
			first := duringBulkCopy()
			second := duringBulkCopy()
			first()
			if got := percent(); got != tc.during {
				t.Errorf("GC percent while a copy still runs: %d, want %d", got, tc.during)
			}
			second()
			if got := percent(); got != tc.end {
				t.Errorf("GC percent after the copies: %d, want %d", got, tc.end)
			}
		})
	}
}
