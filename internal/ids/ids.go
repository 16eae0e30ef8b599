// Package ids makes the ids of messages in the queue and the record.
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
)

var seq atomic.Uint32

// New returns an id that sorts by time of arrival: microseconds since the
// epoch, then a counter and random bits against collisions (two processes,
// or a clock set back).
func New(now time.Time) string {
	var r [2]byte
	rand.Read(r[:])
	return fmt.Sprintf("%013x%04x%04x", now.UnixMicro(), seq.Add(1)&0xffff, binary.BigEndian.Uint16(r[:]))
}
