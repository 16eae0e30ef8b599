package archive

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// A segment file is a sequence of records:
//
//	"SPR1" | header length (uint32) | header (JSON, in clear) |
//	payload length (uint64) | payload (OpenPGP, encrypted to the archive key) |
//	record hash (32 bytes) = SHA-256(header)
//
// The header holds what verifying and finding records need and nothing a
// stolen disk should reveal: sequence number, kind, time, the relay's
// message id, keyed hashes of addresses, the SHA-256 of the payload and the
// hash of the record before. Changing, removing, reordering or truncating
// anything breaks the chain; a closed segment ends in a seal record signed
// with the archive's seal key.

const (
	recordMagic   = "SPR1"
	maxHeaderLen  = 1 << 20
	maxPayloadLen = 1 << 40
)

// Kinds of record.
const (
	kindInit    = "init"
	kindMessage = "message"
	kindEvent   = "event"
	kindRefusal = "refusal"
	kindConsent = "consent"
	kindHold    = "hold"
	kindRelease = "release"
	kindPrune   = "prune"
	kindTorn    = "torn"
	kindSeal    = "seal"
)

// header is a record's clear part.
type header struct {
	Seq     uint64    `json:"seq"`
	Kind    string    `json:"kind"`
	Time    time.Time `json:"time"`
	Prev    string    `json:"prev"`           // hash of the record before, hex; zeros for the first
	PSHA    string    `json:"psha,omitempty"` // SHA-256 of the payload, hex
	PLen    int64     `json:"plen"`
	ID      string    `json:"id,omitempty"`      // message id (message, event); consent id as text
	Addrs   []string  `json:"addrs,omitempty"`   // keyed hashes of client addresses, for --client and holds
	Event   string    `json:"event,omitempty"`   // event kind
	Dir     string    `json:"dir,omitempty"`     // message direction
	Consent int64     `json:"consent,omitempty"` // consent event id
	// refusal (its reference is ID): the reason's code and the account,
	// for `sealpost refusals show` without the archive key
	Code    string `json:"code,omitempty"`
	Account string `json:"account,omitempty"`
	// activity (who is Account, what is Event, its object ID): where from
	From string `json:"from,omitempty"`
	// Node names the relay whose chain this is (archive.node); empty on a
	// practice's only relay, and in every record written before nodes had
	// names, so those records and their hashes are as they were.
	Node string `json:"node,omitempty"`
	// hold / release
	Hold  string `json:"hold,omitempty"`
	Since string `json:"since,omitempty"` // YYYY-MM-DD
	Until string `json:"until,omitempty"`
	// init: the keys the chain was started with
	SealKey string   `json:"seal_key,omitempty"`
	ArchKey []string `json:"archive_keys,omitempty"`
	// seal: signature over the segment's last record hash. PrunesSigned
	// (signed with it) says prune records are signed from here on: an
	// unsigned one after such a seal is forged.
	Segment      string `json:"segment,omitempty"`
	Last         string `json:"last,omitempty"`
	Sig          string `json:"sig,omitempty"` // seal; prune: over pruneMessage
	PrunesSigned bool   `json:"prunes_signed,omitempty"`
	// prune: the segments removed, with their seals, and what the archive
	// knew from records in them that a start must still know
	Pruned []prunedSegment `json:"pruned,omitempty"`
	Carry  *pruneCarry     `json:"carry,omitempty"`
	// message found over IMAP: where, and a keyed hash of its bytes, so
	// that it is archived once however often it is seen
	Src   *IngestSource `json:"src,omitempty"`
	Dedup string        `json:"dedup,omitempty"`
	// torn: bytes set aside at start
	Offset   int64  `json:"offset,omitempty"`
	Length   int64  `json:"length,omitempty"`
	SetAside string `json:"set_aside,omitempty"`
}

type prunedSegment struct {
	Name     string `json:"name"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	First    string `json:"first_prev"` // the prev of its first record
	// SealHeader is its seal record's header, byte for byte: its hash is
	// what the next segment chains to, and it carries the seal's signature.
	SealHeader []byte `json:"seal_header"`
	From       string `json:"from"` // time of its first record
	To         string `json:"to"`   // time of its last record
}

var zeroHash = hex.EncodeToString(make([]byte, 32))

// storedRecord is one record as read back from its segment.
type storedRecord struct {
	h       header
	hash    string
	offset  int64 // in its segment
	size    int64
	payload []byte // nil unless asked for
}

// errIncomplete marks bytes at the end of a segment that are not a whole
// record: a write in progress, or a crash in the middle of one.
var errIncomplete = errors.New("incomplete record")

// recordError is a record that is there but wrong.
type recordError struct {
	segment string
	offset  int64
	seq     uint64
	msg     string
}

func (e *recordError) Error() string {
	if e.seq > 0 {
		return fmt.Sprintf("%s: record %d (at byte %d): %s", e.segment, e.seq, e.offset, e.msg)
	}
	return fmt.Sprintf("%s: at byte %d: %s", e.segment, e.offset, e.msg)
}

// segmentReader reads the records of one segment in order.
type segmentReader struct {
	name     string
	r        *bufio.Reader
	off      int64
	size     int64
	payloads bool // read payloads into memory (export); otherwise hash them while skipping
}

func (s *segmentReader) next() (*storedRecord, error) {
	if s.off == s.size {
		return nil, io.EOF
	}
	start := s.off
	bad := func(msg string, seq uint64) error {
		return &recordError{segment: s.name, offset: start, seq: seq, msg: msg}
	}
	var fixed [8]byte
	if s.size-s.off < 8 {
		return nil, errIncomplete
	}
	if _, err := io.ReadFull(s.r, fixed[:]); err != nil {
		return nil, err
	}
	if string(fixed[:4]) != recordMagic {
		return nil, bad("not the start of a record", 0)
	}
	hl := int64(binary.BigEndian.Uint32(fixed[4:]))
	if hl > maxHeaderLen {
		return nil, bad("header length out of range", 0)
	}
	if s.size-s.off < 8+hl+8 {
		return nil, errIncomplete
	}
	hb := make([]byte, hl)
	if _, err := io.ReadFull(s.r, hb); err != nil {
		return nil, err
	}
	var rec storedRecord
	if err := json.Unmarshal(hb, &rec.h); err != nil {
		return nil, bad("header does not parse: "+err.Error(), 0)
	}
	if _, err := io.ReadFull(s.r, fixed[:]); err != nil {
		return nil, err
	}
	pl := int64(binary.BigEndian.Uint64(fixed[:]))
	if pl < 0 || pl > maxPayloadLen {
		return nil, bad("payload length out of range", rec.h.Seq)
	}
	if s.size-s.off < 8+hl+8+pl+32 {
		return nil, errIncomplete
	}
	ph := sha256.New()
	if s.payloads {
		rec.payload = make([]byte, pl)
		if _, err := io.ReadFull(s.r, rec.payload); err != nil {
			return nil, err
		}
		ph.Write(rec.payload)
	} else if _, err := io.CopyN(ph, s.r, pl); err != nil {
		return nil, err
	}
	var stored [32]byte
	if _, err := io.ReadFull(s.r, stored[:]); err != nil {
		return nil, err
	}
	s.off += 8 + hl + 8 + pl + 32
	sum := sha256.Sum256(hb)
	rec.hash = hex.EncodeToString(sum[:])
	rec.offset, rec.size = start, s.off-start
	if sum != stored {
		return &rec, bad("the record's hash does not match its header (changed after it was written)", rec.h.Seq)
	}
	if pl != rec.h.PLen || (pl > 0 && hex.EncodeToString(ph.Sum(nil)) != rec.h.PSHA) {
		return &rec, bad("the payload does not match the hash in the header (changed after it was written)", rec.h.Seq)
	}
	return &rec, nil
}

func openSegment(path string, payloads bool) (*segmentReader, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return &segmentReader{name: filepath.Base(path), r: bufio.NewReaderSize(f, 1<<20), size: fi.Size(), payloads: payloads}, f, nil
}

var segmentName = regexp.MustCompile(`^seg-(\d{8})\.log$`)

func segName(n int) string { return fmt.Sprintf("seg-%08d.log", n) }

// listSegments returns the segment files in order.
func listSegments(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if segmentName.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

func segNumber(name string) int {
	m := segmentName.FindStringSubmatch(name)
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscanf(m[1], "%d", &n)
	return n
}

// sealMessage is what a seal signs. Seals written before prune records
// were signed sign the v1 message; since, the v2 message, which says so.
func sealMessage(segment, last string, prunesSigned bool) []byte {
	if prunesSigned {
		return []byte("sealpost-archive-seal-v2\nprunes-signed\n" + segment + "\n" + last + "\n")
	}
	return []byte("sealpost-archive-seal-v1\n" + segment + "\n" + last + "\n")
}

// pruneCarry is what a start reads from records and must not forget when
// they are pruned: the newest consent event copied (or the registry's
// history would be copied in again, long after it was pruned) and how far
// each IMAP folder was read (or the reader would archive again, as new,
// mail older than the retention still in the mailbox).
type pruneCarry struct {
	Consent int64          `json:"consent,omitempty"`
	Ingest  []IngestSource `json:"ingest,omitempty"`
}

// pruneMessage is what a prune record's signature signs: its place in the
// chain and what it says was removed. Without the seal key, no one can
// write a prune record that accounts for segments removed.
func pruneMessage(h *header) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "sealpost-archive-prune-v1\n%d\n%s\n", h.Seq, h.Prev)
	for _, p := range h.Pruned {
		sum := sha256.Sum256(p.SealHeader)
		fmt.Fprintf(&b, "%s\n%d\n%d\n%s\n%x\n%s\n%s\n", p.Name, p.FirstSeq, p.LastSeq, p.First, sum, p.From, p.To)
	}
	if c := h.Carry; c != nil {
		fmt.Fprintf(&b, "carry\n%d\n", c.Consent)
		for _, s := range c.Ingest {
			fmt.Fprintf(&b, "%q\n%q\n%d\n%d\n", s.Account, s.Folder, s.UIDValidity, s.UID)
		}
	}
	return []byte(b.String())
}

// scanHeaders calls f for the header of each complete record in a segment,
// skipping payloads without reading them.
func scanHeaders(path string, f func(h *header, raw []byte)) error {
	file, err := os.Open(path)
	if err != nil {
		return err
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	var off int64
	var fixed [8]byte
	for off < size {
		if size-off < 8 {
			return errIncomplete
		}
		if _, err := file.ReadAt(fixed[:], off); err != nil {
			return err
		}
		if string(fixed[:4]) != recordMagic {
			return &recordError{segment: filepath.Base(path), offset: off, msg: "not the start of a record"}
		}
		hl := int64(binary.BigEndian.Uint32(fixed[4:]))
		if hl > maxHeaderLen || size-off < 8+hl+8 {
			return errIncomplete
		}
		hb := make([]byte, hl)
		if _, err := file.ReadAt(hb, off+8); err != nil {
			return err
		}
		if _, err := file.ReadAt(fixed[:], off+8+hl); err != nil {
			return err
		}
		pl := int64(binary.BigEndian.Uint64(fixed[:]))
		if pl < 0 || size-off < 8+hl+8+pl+32 {
			return errIncomplete
		}
		var h header
		if err := json.Unmarshal(hb, &h); err != nil {
			return &recordError{segment: filepath.Base(path), offset: off, msg: "header does not parse"}
		}
		f(&h, hb)
		off += 8 + hl + 8 + pl + 32
	}
	return nil
}
