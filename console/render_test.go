package console

import (
	"strings"
	"testing"
	"time"
)

// TestTimesNameTheirZone: a time on a page says which zone it is in, as
// the server's clock need not be the reader's.
func TestTimesNameTheirZone(t *testing.T) {
	when := funcs["when"].(func(time.Time) string)
	got := when(time.Date(2026, 12, 7, 0, 2, 0, 0, time.UTC))
	zone, _ := time.Date(2026, 12, 7, 0, 2, 0, 0, time.UTC).Local().Zone()
	if !strings.HasSuffix(got, " "+zone) || !strings.HasPrefix(got, "2026-12-0") {
		t.Errorf("when = %q, want the date, time and zone %s", got, zone)
	}
	if got := when(time.Time{}); got != "never" {
		t.Errorf("when(zero) = %q", got)
	}
}
