package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/record"
)

// Filter selects what an export holds.
type Filter struct {
	Since, Until time.Time // zero: open ended; Until is exclusive
	// Clients are addresses: only messages to or from them, their refusals
	// and their consent history.
	Clients []string
}

// ExportReport summarises an export.
type ExportReport struct {
	Messages, Refusals, ConsentEvents int
	HeadSeq                           uint64
	Head                              string
	Verified                          bool
	// RecordsAfterHead counts the records written after the chain head
	// was verified (the relay goes on writing during an export): they are
	// not in this export, which holds only what the verification covered.
	RecordsAfterHead int
}

// The manifest's records (DESIGN.md, archive export).
type manifest struct {
	Format     int                   `json:"sealpost_export"`
	ExportedAt time.Time             `json:"exported_at"`
	Archive    manifestArchive       `json:"archive"`
	Filter     manifestFilter        `json:"filter"`
	Messages   []manifestMessage     `json:"messages"`
	Refusals   []Refusal             `json:"refusals"`
	Consent    []record.ConsentEvent `json:"consent_history"`
}

type manifestArchive struct {
	ChainHeadSeq uint64 `json:"chain_head_seq"`
	ChainHead    string `json:"chain_head"`
	Verified     bool   `json:"verified"`
	// Records written after the chain head, left out of the export.
	RecordsAfterHead int      `json:"records_after_head,omitempty"`
	Problems         []string `json:"problems,omitempty"`
	SealKey          string   `json:"seal_key"`
}

type manifestFilter struct {
	Since   string   `json:"since,omitempty"`
	Until   string   `json:"until,omitempty"`
	Clients []string `json:"clients,omitempty"`
}

type manifestMessage struct {
	ID         string              `json:"id"`
	Time       time.Time           `json:"time"`
	Direction  Direction           `json:"direction"`
	Account    string              `json:"account,omitempty"`
	From       string              `json:"from"`
	Sender     string              `json:"envelope_sender,omitempty"`
	Subject    string              `json:"subject"`
	MessageID  string              `json:"message_id"`
	SHA256     string              `json:"sha256"`
	Size       int64               `json:"size"`
	File       string              `json:"file"`
	Folder     string              `json:"folder,omitempty"`
	Recipients []manifestRecipient `json:"recipients"`
	Fired      []record.RuleHit    `json:"rules_fired,omitempty"`
}

type manifestRecipient struct {
	Address        string             `json:"address"`
	Protection     record.Protection  `json:"protection"`
	Bcc            bool               `json:"bcc,omitempty"`
	Reason         string             `json:"reason"`
	Consent        *manifestConsent   `json:"consent,omitempty"`
	KeyFingerprint string             `json:"key_fingerprint,omitempty"`
	Delivery       []manifestDelivery `json:"delivery"`
}

type manifestConsent struct {
	ID       int64  `json:"id"`
	Client   string `json:"client,omitempty"`
	Evidence string `json:"evidence"`
	Date     string `json:"date"`
	Expires  string `json:"expires,omitempty"`
}

type manifestDelivery struct {
	Status EventKind `json:"status"`
	Time   time.Time `json:"time"`
	Reply  string    `json:"reply,omitempty"`
}

// located is a record found by its header, and where its payload is.
type located struct {
	seg    string
	h      header
	payOff int64
	payLen int64
}

// walk calls f for every complete record of every segment, in order.
func walk(dir string, f func(located)) error {
	_, err := walkFrom(dir, nil, f)
	return err
}

// walkFrom is walk starting, in each segment, at the offset given in from
// (the end of what an earlier walk saw) and returning the new ends: an
// archive that only grows is read once, not at every look.
func walkFrom(dir string, from map[string]int64, f func(located)) (map[string]int64, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	ends := make(map[string]int64, len(segs))
	for _, s := range segs {
		off := from[s]
		ends[s] = off
		file, err := os.Open(filepath.Join(dir, s))
		if err != nil {
			return nil, err
		}
		fi, err := file.Stat()
		if err != nil {
			file.Close()
			return nil, err
		}
		size := fi.Size()
		var fixed [8]byte
		for off+8 <= size {
			if _, err := file.ReadAt(fixed[:], off); err != nil {
				break
			}
			hl := int64(binary.BigEndian.Uint32(fixed[4:]))
			if string(fixed[:4]) != recordMagic || hl > maxHeaderLen || off+8+hl+8 > size {
				break
			}
			hb := make([]byte, hl)
			file.ReadAt(hb, off+8)
			file.ReadAt(fixed[:], off+8+hl)
			pl := int64(binary.BigEndian.Uint64(fixed[:]))
			if pl < 0 || off+8+hl+8+pl+32 > size {
				break
			}
			var h header
			if json.Unmarshal(hb, &h) == nil {
				f(located{seg: s, h: h, payOff: off + 8 + hl + 8, payLen: pl})
			}
			off += 8 + hl + 8 + pl + 32
			ends[s] = off
		}
		file.Close()
	}
	return ends, nil
}

// exportVerified is called between an export's verification and its
// reading of the records (tests write records there).
var exportVerified = func() {}

// Export decrypts the selected records with the archive's private key and
// writes the layout of DESIGN.md into out, which must not exist yet or be
// empty: manifest.json, messages/ID.eml, SHA256SUMS, index.html (and
// seal.pub, to check the archive's seals). It holds the records up to the
// chain head it verified; those written since are counted, not exported.
func Export(ctx context.Context, dir string, key openpgp.EntityList, out string, f Filter) (*ExportReport, error) {
	if ents, err := os.ReadDir(out); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s is not empty: export into a new folder", out)
	}
	hashKey, err := os.ReadFile(filepath.Join(dir, "address-hash.key"))
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	sealPub, err := os.ReadFile(filepath.Join(dir, "seal.pub"))
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	rep := &ExportReport{}
	vrep, verr := Verify(dir, nil)
	exportVerified()
	m := manifest{Format: 1, ExportedAt: time.Now().UTC(), Refusals: []Refusal{}, Consent: []record.ConsentEvent{}, Messages: []manifestMessage{}}
	if vrep != nil {
		m.Archive = manifestArchive{ChainHeadSeq: vrep.HeadSeq, ChainHead: vrep.Head, Verified: verr == nil, Problems: vrep.Problems}
		rep.HeadSeq, rep.Head, rep.Verified = vrep.HeadSeq, vrep.Head, verr == nil
	}
	m.Archive.SealKey = strings.TrimSpace(string(sealPub))
	if !f.Since.IsZero() {
		m.Filter.Since = f.Since.Format("2006-01-02")
	}
	if !f.Until.IsZero() {
		m.Filter.Until = f.Until.Format("2006-01-02")
	}
	m.Filter.Clients = f.Clients
	clients := map[string]bool{}
	for _, c := range f.Clients {
		clients[addrHash(hashKey, c)] = true
	}
	matchClient := func(h *header) bool {
		if len(clients) == 0 {
			return true
		}
		for _, a := range h.Addrs {
			if clients[a] {
				return true
			}
		}
		return false
	}
	inRange := func(t time.Time) bool {
		return (f.Since.IsZero() || !t.Before(f.Since)) && (f.Until.IsZero() || t.Before(f.Until))
	}
	var msgs, events, refusals, consents []located
	selected := map[string]bool{}
	err = walk(dir, func(l located) {
		// Only what Verify covered: a record written since is not under
		// the chain head the manifest names, verified or not.
		if vrep != nil && l.h.Seq > vrep.HeadSeq {
			rep.RecordsAfterHead++
			return
		}
		switch l.h.Kind {
		case kindMessage:
			if inRange(l.h.Time) && matchClient(&l.h) {
				msgs = append(msgs, l)
				selected[l.h.ID] = true
			}
		case kindEvent:
			events = append(events, l)
		case kindRefusal:
			if inRange(l.h.Time) && matchClient(&l.h) {
				refusals = append(refusals, l)
			}
		case kindConsent:
			if matchClient(&l.h) {
				consents = append(consents, l)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(out, "messages"), 0o700); err != nil {
		return nil, err
	}
	files := &openSegments{dir: dir, files: map[string]*os.File{}}
	defer files.close()

	// Records are decrypted on every core (each streams into its own file),
	// and taken in chain order for the manifest.
	type exported struct {
		meta      []byte
		size      int64
		sum, file string
		err       error
	}
	err = inOrder(ctx, len(msgs), func(i int) exported {
		l := msgs[i]
		// The header's ID is the metadata's: the file can be named before
		// the metadata (after the body) is read.
		r := exported{file: "messages/" + safeName(l.h.ID) + ".eml"}
		r.meta, r.size, r.sum, r.err = files.exportMessage(l, key, filepath.Join(out, r.file))
		return r
	}, func(i int, r exported) error {
		l := msgs[i]
		if r.err != nil {
			return fmt.Errorf("record %d (message %s): %w", l.h.Seq, l.h.ID, r.err)
		}
		metaJSON, size, sum, file := r.meta, r.size, r.sum, r.file
		var meta messageMeta
		if err := json.Unmarshal(metaJSON, &meta); err != nil {
			return fmt.Errorf("record %d: metadata: %w", l.h.Seq, err)
		}
		mm := manifestMessage{ID: meta.ID, Time: meta.Time, Direction: meta.Direction, Account: meta.Account, From: meta.From,
			Sender: meta.Sender, Subject: meta.Subject, MessageID: meta.MessageID, SHA256: sum,
			Size: size, File: file, Folder: meta.Folder, Fired: meta.Fired, Recipients: []manifestRecipient{}}
		for _, d := range meta.Decisions {
			r := manifestRecipient{Address: d.Address, Protection: d.Protection, Bcc: d.Bcc, Reason: d.Reason, KeyFingerprint: d.KeyFingerprint, Delivery: []manifestDelivery{}}
			if c := d.Consent; c != nil {
				r.Consent = &manifestConsent{ID: c.ID, Client: c.Client, Evidence: c.Evidence, Date: c.Signed, Expires: c.Expires}
			}
			mm.Recipients = append(mm.Recipients, r)
		}
		m.Messages = append(m.Messages, mm)
		return nil
	})
	if err != nil {
		return nil, err
	}
	byID := map[string]*manifestMessage{}
	for i := range m.Messages {
		byID[m.Messages[i].ID] = &m.Messages[i]
	}
	for _, l := range events {
		mm := byID[l.h.ID]
		if mm == nil {
			continue
		}
		_, metaJSON, err := files.decrypt(l, key)
		if err != nil {
			return nil, fmt.Errorf("record %d (event): %w", l.h.Seq, err)
		}
		var ev Event
		if err := json.Unmarshal(metaJSON, &ev); err != nil {
			return nil, err
		}
		for _, rcpt := range ev.Recipients {
			for i := range mm.Recipients {
				if strings.EqualFold(mm.Recipients[i].Address, rcpt) || matchesAddress(mm.Recipients[i].Address, rcpt) {
					mm.Recipients[i].Delivery = append(mm.Recipients[i].Delivery, manifestDelivery{Status: ev.Kind, Time: ev.Time, Reply: ev.Reply})
				}
			}
		}
		if len(ev.Recipients) == 0 { // about the whole message (aborted, dropped)
			for i := range mm.Recipients {
				mm.Recipients[i].Delivery = append(mm.Recipients[i].Delivery, manifestDelivery{Status: ev.Kind, Time: ev.Time, Reply: ev.Reply})
			}
		}
	}
	for _, l := range refusals {
		_, metaJSON, err := files.decrypt(l, key)
		if err != nil {
			return nil, fmt.Errorf("record %d (refusal): %w", l.h.Seq, err)
		}
		var r Refusal
		if err := json.Unmarshal(metaJSON, &r); err != nil {
			return nil, err
		}
		m.Refusals = append(m.Refusals, r)
	}
	for _, l := range consents {
		_, metaJSON, err := files.decrypt(l, key)
		if err != nil {
			return nil, fmt.Errorf("record %d (consent): %w", l.h.Seq, err)
		}
		var ev record.ConsentEvent
		if err := json.Unmarshal(metaJSON, &ev); err != nil {
			return nil, err
		}
		m.Consent = append(m.Consent, ev)
	}
	m.Archive.RecordsAfterHead = rep.RecordsAfterHead
	sort.SliceStable(m.Messages, func(i, j int) bool { return m.Messages[i].Time.Before(m.Messages[j].Time) })
	rep.Messages, rep.Refusals, rep.ConsentEvents = len(m.Messages), len(m.Refusals), len(m.Consent)

	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(out, "manifest.json"), append(mj, '\n'), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(out, "seal.pub"), sealPub, 0o600); err != nil {
		return nil, err
	}
	if err := writeIndex(filepath.Join(out, "index.html"), &m); err != nil {
		return nil, err
	}
	return rep, writeSums(out)
}

func matchesAddress(a, b string) bool {
	return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}

// safeName keeps a message id usable as a file name.
func safeName(id string) string {
	var b strings.Builder
	for _, r := range id {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteRune('_')
		}
	}
	return b.String()
}

type openSegments struct {
	dir   string
	mu    sync.Mutex // guards files; reads (ReadAt) run in parallel
	files map[string]*os.File
}

func (o *openSegments) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, f := range o.files {
		f.Close()
	}
	o.files = map[string]*os.File{}
}

func (o *openSegments) file(seg string) (*os.File, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if f := o.files[seg]; f != nil {
		// A segment pruned since it was opened must not stay readable
		// through the open file (a long-running view).
		if _, err := os.Stat(filepath.Join(o.dir, seg)); errors.Is(err, os.ErrNotExist) {
			f.Close()
			delete(o.files, seg)
			return nil, fmt.Errorf("%s was pruned", seg)
		}
		return f, nil
	}
	f, err := os.Open(filepath.Join(o.dir, seg))
	if err != nil {
		return nil, err
	}
	o.files[seg] = f
	return f, nil
}

// inOrder runs work(i) for every i below n on every core, and hands each
// result to use in the order of i; it stops at the first error from use.
// Records are decrypted this way: decryption is the slow part, and the
// manifest and the view keep the chain's order.
func inOrder[T any](ctx context.Context, n int, work func(i int) T, use func(i int, r T) error) error {
	results := make([]chan T, n)
	for i := range results {
		results[i] = make(chan T, 1)
	}
	wctx, stop := context.WithCancel(ctx)
	var workers sync.WaitGroup
	defer func() { stop(); workers.Wait() }()
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), n) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range next {
				results[i] <- work(i)
			}
		}()
	}
	go func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-wctx.Done():
				return
			}
		}
	}()
	for i := range n {
		select {
		case r := <-results[i]:
			if err := use(i, r); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// decrypt reads a record's payload and splits it into body and metadata.
func (o *openSegments) decrypt(l located, key openpgp.EntityList) (body, meta []byte, err error) {
	var plain bytes.Buffer
	plain.Grow(int(l.payLen)) // the plaintext is a little shorter than its encryption
	if _, err := o.decryptTo(l, key, &plain); err != nil {
		return nil, nil, err
	}
	p := plain.Bytes()
	split, err := splitAt(int64(len(p)), func(b []byte, off int64) error { copy(b, p[off:]); return nil })
	if err != nil {
		return nil, nil, err
	}
	return p[:split], p[split : len(p)-4], nil
}

// decryptTo streams a record's plaintext (body, metadata, and the
// metadata's length) into w, and returns its length. What it wrote is to be
// thrown away on error: the payload's hash and the MDC are known only at its
// end.
func (o *openSegments) decryptTo(l located, key openpgp.EntityList, w io.Writer) (int64, error) {
	f, err := o.file(l.seg)
	if err != nil {
		return 0, err
	}
	h := sha256.New()
	payload := io.TeeReader(io.NewSectionReader(f, l.payOff, l.payLen), h)
	// A damaged payload usually fails to decrypt before its hash is known:
	// the hash is what says which it is.
	damaged := func(err error) error {
		if _, derr := io.Copy(io.Discard, payload); derr != nil {
			return derr
		}
		if hex.EncodeToString(h.Sum(nil)) != l.h.PSHA {
			return fmt.Errorf("the payload does not match its header (run sealpost archive verify): %w", err)
		}
		return err
	}
	md, err := openpgp.ReadMessage(payload, key, nil, nil)
	if err != nil {
		return 0, damaged(fmt.Errorf("decrypt: %w (is this the archive's private key?)", err))
	}
	n, err := io.Copy(w, md.UnverifiedBody) // at its end, the MDC is checked
	if err != nil {
		return n, damaged(fmt.Errorf("decrypt: %w", err))
	}
	// Whatever follows the packets counts too.
	if err := damaged(nil); err != nil {
		return n, err
	}
	return n, nil
}

// metadata decrypts a record for its metadata and body size only: the body
// streams past, only its last part is kept.
func (o *openSegments) metadata(l located, key openpgp.EntityList) (size int64, meta []byte, err error) {
	tail := &tailKeeper{keep: 256 << 10}
	n, err := o.decryptTo(l, key, tail)
	if err != nil {
		return 0, nil, err
	}
	kept := int64(len(tail.b))
	size, err = splitAt(n, func(b []byte, off int64) error {
		if off < n-kept {
			return errTailTooShort
		}
		copy(b, tail.b[off-(n-kept):])
		return nil
	})
	if err == errTailTooShort || (err == nil && size < n-kept) {
		// Metadata longer than what was kept (hundreds of recipients):
		// decrypt again, whole.
		body, meta, err := o.decrypt(l, key)
		return int64(len(body)), meta, err
	}
	if err != nil {
		return 0, nil, err
	}
	return size, tail.b[size-(n-kept) : kept-4], nil
}

var errTailTooShort = errors.New("metadata beyond the kept tail")

// sameMessage checks that a message record's metadata is about the message
// its header (hash-chained) names: a payload moved from another record
// decrypts fine.
func sameMessage(l located, meta []byte) error {
	var m struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(meta, &m); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if m.ID != l.h.ID {
		return fmt.Errorf("its metadata names message %s, its header %s", m.ID, l.h.ID)
	}
	return nil
}

// tailKeeper is a writer that keeps only the last keep octets (at least).
type tailKeeper struct {
	keep int
	b    []byte
}

func (t *tailKeeper) Write(p []byte) (int, error) {
	if len(p) >= t.keep {
		t.b = append(t.b[:0], p[len(p)-t.keep:]...)
		return len(p), nil
	}
	if len(t.b)+len(p) > 2*t.keep { // move the last keep-len(p) to the front
		t.b = t.b[:copy(t.b, t.b[len(t.b)-(t.keep-len(p)):])]
	}
	t.b = append(t.b, p...)
	return len(p), nil
}

// splitAt finds where the body ends in a plaintext of size n, reading its
// last octets through readAt: the metadata's length is in the last four.
func splitAt(n int64, readAt func(b []byte, off int64) error) (int64, error) {
	if n < 4 {
		return 0, errors.New("payload too short")
	}
	var l [4]byte
	if err := readAt(l[:], n-4); err != nil {
		return 0, err
	}
	m := int64(binary.BigEndian.Uint32(l[:]))
	if m > n-4 {
		return 0, errors.New("payload metadata length out of range")
	}
	return n - 4 - m, nil
}

// exportMessage decrypts a message record into the file path, streaming:
// a 25 MB attachment is never held in memory. It returns the metadata and
// the body's size and SHA-256. The file gets its name only when the record
// checked out whole, its metadata naming the message its header does.
func (o *openSegments) exportMessage(l located, key openpgp.EntityList, path string) (meta []byte, size int64, sum string, err error) {
	// Written under a temporary name, renamed when whole: an interrupted
	// export leaves no message file that looks complete.
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".record-%d.partial", l.h.Seq))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, 0, "", err
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(tmp)
		}
	}()
	n, err := o.decryptTo(l, key, f)
	if err != nil {
		return nil, 0, "", err
	}
	readAt := func(b []byte, off int64) error { _, err := f.ReadAt(b, off); return err }
	size, err = splitAt(n, readAt)
	if err != nil {
		return nil, 0, "", err
	}
	meta = make([]byte, n-4-size)
	if err := readAt(meta, size); err != nil {
		return nil, 0, "", err
	}
	if err := sameMessage(l, meta); err != nil {
		return nil, 0, "", err
	}
	if err := f.Truncate(size); err != nil {
		return nil, 0, "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return nil, 0, "", err
	}
	if err := f.Close(); err != nil {
		return nil, 0, "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, 0, "", err
	}
	return meta, size, hex.EncodeToString(h.Sum(nil)), nil
}

// writeSums writes SHA256SUMS over every file in out, in the format
// `sha256sum -c` reads.
func writeSums(out string) error {
	var lines []string
	err := filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		if rel == "SHA256SUMS" {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		lines = append(lines, hex.EncodeToString(h.Sum(nil))+"  "+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(lines)
	return os.WriteFile(filepath.Join(out, "SHA256SUMS"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

//go:embed index.html.tmpl
var indexTemplate string

var indexTmpl = template.Must(template.New("index").Funcs(template.FuncMap{
	"date": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04") },
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(indexTemplate))

func writeIndex(path string, m *manifest) error {
	var b bytes.Buffer
	if err := indexTmpl.Execute(&b, m); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}
