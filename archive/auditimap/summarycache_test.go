package auditimap

import (
	"bytes"
	"testing"
)

// TestSummaryCacheBounded: a client reading every decisions summary keeps
// no more of them in memory than the cache holds, and each summary comes
// out the same whether kept or made again.
func TestSummaryCacheBounded(t *testing.T) {
	c := &summaryCache{max: 10 << 10, byKey: map[seenKey][]byte{}}
	made := 0
	gen := func(i int) func() []byte {
		return func() []byte { made++; return bytes.Repeat([]byte{byte('a' + i%26)}, 1000) }
	}
	for i := range 100 {
		if b := c.get(seenKey{'d', uint32(i)}, gen(i)); len(b) != 1000 || b[0] != byte('a'+i%26) {
			t.Fatalf("summary %d: %q...", i, b[:1])
		}
	}
	if c.used > c.max || len(c.byKey) != 10 {
		t.Errorf("%d octets in %d summaries kept, the cache holds %d", c.used, len(c.byKey), c.max)
	}
	before := made
	if b := c.get(seenKey{'d', 99}, gen(99)); b[0] != byte('a'+99%26) || made != before {
		t.Errorf("the newest summary was made again")
	}
	if b := c.get(seenKey{'d', 0}, gen(0)); b[0] != 'a' || made != before+1 {
		t.Errorf("the oldest summary, dropped, was not made again the same")
	}
}
