package ids

import (
	"slices"
	"testing"
	"time"
)

func TestNewSortsByTimeAndIsUnique(t *testing.T) {
	base := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	var got []string
	seen := map[string]bool{}
	for i := range 1000 {
		id := New(base.Add(time.Duration(i) * time.Microsecond))
		if seen[id] {
			t.Fatalf("id %s made twice", id)
		}
		seen[id] = true
		got = append(got, id)
	}
	if !slices.IsSorted(got) {
		t.Error("ids made one after the other do not sort in that order")
	}
	if a, b := New(base), New(base); a == b {
		t.Errorf("two ids at the same microsecond are equal: %s", a)
	}
}
