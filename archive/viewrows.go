package archive

import (
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"math"
	"slices"
	"time"
	"unsafe"
)

// What the view keeps of each message is a fixed-width row without
// pointers, in chunks that are never copied as they grow: the collector
// does not scan them, and a million messages with their events and ids
// cost about 70 MB whatever their addresses or ids (strings, slices and map
// entries per message would cost hundreds of octets each). Everything else
// is read again from the segment when asked for.

// viewRow is one message of the view: 40 octets.
type viewRow struct {
	seq  uint64
	loc  uint64 // segLoc: the record's segment and offset
	secs uint32 // Time, Unix seconds (to 2106)
	size uint32 // sizeSpilled: the size is in View.bigSizes
	// newer is how many records after its own the newest record about it
	// is (its newest event's; 0: none).
	newer   uint32
	lastEv  int32  // its newest event in View.events (-1: none)
	clients uint32 // its client set (clientSets)
	zone    int16  // Time's offset east of UTC, in minutes
	flags   uint8
}

func (r *viewRow) updated() uint64 { return r.seq + uint64(r.newer) }

// A row's size is what a million messages cost: this fails to compile if
// it grows.
var _ [40 - unsafe.Sizeof(viewRow{})]struct{}

const (
	rowOutbound = 1 << iota
	// sizeSpilled marks a message of 4 GiB or more: its size is kept aside.
	sizeSpilled = math.MaxUint32
)

// viewEvent is one event record about a message of the view.
type viewEvent struct {
	loc  uint64
	row  uint32 // the message's row
	prev int32  // the event before it about the same message (-1: none)
}

// segLoc packs a segment's number and an offset in it into one integer:
// segments are far smaller than 2^40 octets.
func segLoc(seg string, off int64) uint64 {
	return uint64(segNumber(seg))<<40 | uint64(off)
}

func locSeg(loc uint64) string  { return segName(int(loc >> 40)) }
func locOff(loc uint64) int64   { return int64(loc & (1<<40 - 1)) }
func locSegNo(loc uint64) int64 { return int64(loc >> 40) }

// chunkBits sizes the chunks rows are kept in (16384 rows, under 1 MB).
const chunkBits = 14

// rowChunks is a growing list kept in fixed-size chunks: appending never
// copies what is there.
type rowChunks[T any] struct {
	chunks [][]T
	n      int
}

func (c *rowChunks[T]) append(x T) {
	if c.n>>chunkBits == len(c.chunks) {
		c.chunks = append(c.chunks, make([]T, 0, 1<<chunkBits))
	}
	last := &c.chunks[len(c.chunks)-1]
	*last = append(*last, x)
	c.n++
}

func (c *rowChunks[T]) at(i int) *T { return &c.chunks[i>>chunkBits][i&(1<<chunkBits-1)] }

func (c *rowChunks[T]) len() int { return c.n }

func zoneMinutes(t time.Time) int16 {
	_, off := t.Zone()
	return int16(off / 60)
}

// clientSets keeps each client address once, and each distinct set of
// clients a message is from or to once (most messages have one client):
// a row names its set by number.
type clientSets struct {
	ids   map[string]uint32 // address -> its number
	names []string          // number -> address
	sets  [][]string        // set -> its addresses, sorted
	byKey map[string]uint32 // the set's address numbers, as bytes -> set
}

func newClientSets() *clientSets {
	return &clientSets{ids: map[string]uint32{}, sets: [][]string{nil}, byKey: map[string]uint32{"": 0}}
}

// set returns the number of the set of addrs (sorted, distinct).
func (c *clientSets) set(addrs []string) uint32 {
	key := make([]byte, 0, 4*len(addrs))
	for _, a := range addrs {
		id, ok := c.ids[a]
		if !ok {
			id = uint32(len(c.names))
			c.ids[a] = id
			c.names = append(c.names, a)
		}
		key = binary.BigEndian.AppendUint32(key, id)
	}
	if s, ok := c.byKey[string(key)]; ok {
		return s
	}
	set := make([]string, len(addrs))
	for i := range addrs {
		set[i] = c.names[binary.BigEndian.Uint32(key[4*i:])]
	}
	s := uint32(len(c.sets))
	c.sets = append(c.sets, set)
	c.byKey[string(key)] = s
	return s
}

// idIndex finds a message's row by its id (an event names its message by
// id): a 64-bit hash of each message's id, the newest in a map and the
// rest in sorted arrays, one per first octet of the hash, merged into as
// the map fills: 12 octets a message, and no merge copies more than a
// 256th of them. Two ids with the same hash are told apart when the event
// is read again (View.Details compares the ids in the records' headers).
type idIndex struct {
	seed    maphash.Seed
	recent  map[uint64]uint32
	buckets [256]idBucket
}

type idBucket struct {
	hashes []uint64 // sorted; rows[i] is the row of hashes[i]
	rows   []uint32
}

// idRecent is how many ids are kept in the map before they are merged.
const idRecent = 1 << 14

func newIDIndex() *idIndex {
	return &idIndex{seed: maphash.MakeSeed(), recent: map[uint64]uint32{}}
}

func (x *idIndex) hash(id string) uint64 { return maphash.String(x.seed, id) }

func (x *idIndex) add(id string, row uint32) {
	x.recent[x.hash(id)] = row
	if len(x.recent) >= idRecent {
		x.merge()
	}
}

// find returns the newest row of a message with id.
func (x *idIndex) find(id string) (uint32, bool) {
	h := x.hash(id)
	if r, ok := x.recent[h]; ok {
		return r, true
	}
	b := &x.buckets[h>>56]
	i, found := slices.BinarySearch(b.hashes, h)
	if !found {
		return 0, false
	}
	row := b.rows[i]
	for i++; i < len(b.hashes) && b.hashes[i] == h; i++ {
		row = max(row, b.rows[i])
	}
	return row, true
}

type idPair struct {
	h   uint64
	row uint32
}

func (x *idIndex) merge() {
	fresh := make([]idPair, 0, len(x.recent))
	for h, r := range x.recent {
		fresh = append(fresh, idPair{h, r})
	}
	slices.SortFunc(fresh, func(a, b idPair) int { return cmp.Compare(a.h, b.h) })
	for len(fresh) > 0 {
		n := 1
		for n < len(fresh) && fresh[n].h>>56 == fresh[0].h>>56 {
			n++
		}
		x.buckets[fresh[0].h>>56].merge(fresh[:n])
		fresh = fresh[n:]
	}
	clear(x.recent)
}

// merge adds fresh (sorted, all of this bucket) to the bucket.
func (b *idBucket) merge(fresh []idPair) {
	hashes := make([]uint64, 0, len(b.hashes)+len(fresh))
	rows := make([]uint32, 0, cap(hashes))
	i := 0
	for _, p := range fresh {
		for ; i < len(b.hashes) && b.hashes[i] <= p.h; i++ {
			hashes, rows = append(hashes, b.hashes[i]), append(rows, b.rows[i])
		}
		hashes, rows = append(hashes, p.h), append(rows, p.row)
	}
	b.hashes, b.rows = append(hashes, b.hashes[i:]...), append(rows, b.rows[i:]...)
}

// renumber moves every row to moved[row], dropping those moved to -1 (a
// prune took their messages out).
func (x *idIndex) renumber(moved []int32) {
	for h, r := range x.recent {
		if moved[r] < 0 {
			delete(x.recent, h)
		} else {
			x.recent[h] = uint32(moved[r])
		}
	}
	for k := range x.buckets {
		b := &x.buckets[k]
		hashes, rows := b.hashes[:0], b.rows[:0]
		for i, r := range b.rows {
			if moved[r] >= 0 {
				hashes, rows = append(hashes, b.hashes[i]), append(rows, uint32(moved[r]))
			}
		}
		b.hashes, b.rows = hashes, rows
	}
}
