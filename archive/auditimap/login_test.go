package auditimap

import (
	"testing"
	"time"
)

// TestFailureMemory: failed logins slow an address down for an hour, then
// are forgotten, and addresses not seen for an hour leave the table.
func TestFailureMemory(t *testing.T) {
	s := New(Options{})
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	fc := s.failuresFrom("192.0.2.1", t0)
	fc.n, fc.last = 7, t0
	if got := s.failuresFrom("192.0.2.1", t0.Add(30*time.Minute)).n; got != 7 {
		t.Errorf("after 30 minutes: %d failures remembered, want 7", got)
	}
	if got := s.failuresFrom("192.0.2.1", t0.Add(61*time.Minute)).n; got != 0 {
		t.Errorf("after 61 minutes: %d failures remembered, want 0", got)
	}
	s.failuresFrom("192.0.2.2", t0.Add(3*time.Hour))
	n := 0
	s.failures.Range(func(k, v any) bool { n++; return true })
	if n != 1 {
		t.Errorf("%d addresses in the table after one was idle for hours, want 1", n)
	}
}
