package rules

import (
	"bytes"
	"testing"
)

// TestReadBERNestingLimit: a BER element nested deeper than the limit is
// refused, not followed.
func TestReadBERNestingLimit(t *testing.T) {
	deep := bytes.Repeat([]byte{0x30, 0x80}, 10000)
	if _, _, err := readBER(deep, 0); err == nil {
		t.Error("10,000 nested indefinite lengths read")
	}
}
