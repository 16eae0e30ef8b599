package record

import "testing"

func TestNewRefIsReadable(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 2000; i++ {
		r := NewRef()
		if n, ok := NormalizeRef(" ref " + toLower(r)); !ok || n != r {
			t.Fatalf("NormalizeRef(%q) = %q, %v", r, n, ok)
		}
		seen[r] = true
	}
	if len(seen) < 1990 {
		t.Errorf("2000 references, only %d different", len(seen))
	}
}

func TestNormalizeRefRefusesLookAlikes(t *testing.T) {
	for _, s := range []string{"", "R7K2Q", "R7K2QXX", "R7K2Q0", "R7K2QO", "R7K2Q1", "R7K2QI", "R7K2QB"} {
		if n, ok := NormalizeRef(s); ok {
			t.Errorf("NormalizeRef(%q) = %q, want no reference", s, n)
		}
	}
}

func toLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
