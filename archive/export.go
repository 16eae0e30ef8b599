package archive

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	// ClientName is the client's name or chart id the addresses were found
	// under (ClientAddresses), for the manifest.
	ClientName string
}

// ExportOptions are how an export reads the archive.
type ExportOptions struct {
	// HeadFile is the archive's head file when it was given apart from the
	// archive (default: HeadFile(dir), next to the folder).
	HeadFile string
	// Location is the time zone index.html shows times in (default: the
	// computer's); manifest.json has them in UTC.
	Location *time.Location
	// VerifyAll verifies the whole archive first (VerifyWith), as
	// `archive verify` does: "verified" in the manifest says it did.
	// Without it the export reads only the records it holds and checks
	// those (each header's and payload's hash) and the chain head against
	// the head file.
	VerifyAll bool
}

// ExportReport summarises an export.
type ExportReport struct {
	Messages, Refusals, ConsentEvents int
	Evidence, Activity                int
	HeadSeq                           uint64
	Head                              string
	Verified                          bool // the whole archive verified (ExportOptions.VerifyAll)
	// RecordsChecked says every record exported matched its hashes and
	// the chain head its head file (when there is one).
	RecordsChecked bool
	// RecordsAfterHead counts the records written after the chain head
	// was verified (the relay goes on writing during an export): they are
	// not in this export, which holds only what the verification covered.
	RecordsAfterHead int
	// SealKeyFingerprint is the OpenPGP fingerprint of the seal key that
	// signed SHA256SUMS.
	SealKeyFingerprint string
	// Node is the chain's node as its records name it; Chains, in an export
	// of several chains, what each gave (the fields above are their sums).
	Node   string
	Chains []ExportReport
}

// exportVerified is called between an export's verification and its
// reading of the records (tests write records there).
var exportVerified = func() {}

// Export is ExportWith with the head file next to the archive.
func Export(ctx context.Context, dir string, key openpgp.EntityList, out string, f Filter) (*ExportReport, error) {
	return ExportWith(ctx, dir, key, out, f, ExportOptions{})
}

// ExportWith decrypts the selected records with the archive's private key
// and writes the export layout (ARCHITECTURE.md) into out, which must not
// exist yet or be empty: manifest.json, messages/ID.eml, evidence/ID.EXT
// (the scans of signed forms), index.html, seal.pub and seal-key.asc (the
// seal key, raw and as OpenPGP), SHA256SUMS and its OpenPGP signature
// SHA256SUMS.asc. It holds the records up to the chain head it verified;
// those written since are counted, not exported.
// It only reads dir: an auditor's copy of the archive stays as it was.
func ExportWith(ctx context.Context, dir string, key openpgp.EntityList, out string, f Filter, o ExportOptions) (*ExportReport, error) {
	return ExportChains(ctx, []Chain{{Dir: dir, HeadFile: o.HeadFile}}, key, out, f, o)
}

// chainExport is what one chain gave an export: its part of the manifest,
// its consent events before they are linked to the scans, and its seal key.
type chainExport struct {
	node     string // as its records name it
	dir      string
	rep      *ExportReport
	m        manifest
	consents []record.ConsentEvent
	sealPub  []byte
	signer   *openpgp.Entity
}

// exportChain exports the records of the chain in dir into out (their
// files; the manifest's parts it returns).
func exportChain(ctx context.Context, dir string, key openpgp.EntityList, out string, f Filter, o ExportOptions) (*chainExport, error) {
	hashKey, err := os.ReadFile(filepath.Join(dir, "address-hash.key"))
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	sealPub, err := os.ReadFile(filepath.Join(dir, "seal.pub"))
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	signer, err := exportSigner(dir)
	if err != nil {
		return nil, err
	}
	node, err := ChainNode(dir)
	if err != nil {
		return nil, err
	}
	rep := &ExportReport{}
	m := newManifest(f, sealPub)
	m.Archive.SealKeyFingerprint = formatFingerprint(signer.PrimaryKey.Fingerprint)
	rep.SealKeyFingerprint = m.Archive.SealKeyFingerprint
	// Verifying the whole archive, the export trusts nothing but the
	// segments: it finds the records by reading every header too.
	ir := openScanReader(dir)
	headFile := readExportHead(dir, o.HeadFile)
	if !o.VerifyAll {
		if ir, err = openIndexReader(ctx, dir); err != nil {
			return nil, err
		}
	}
	defer ir.close()
	if err := exportHead(dir, ir, headFile, o, rep, &m); err != nil {
		return nil, err
	}
	sel, err := selectRecords(ctx, ir, hashKey, f, rep.HeadSeq)
	if err != nil {
		return nil, err
	}
	rep.RecordsAfterHead = sel.afterHead
	if err := os.MkdirAll(filepath.Join(out, "messages"), 0o700); err != nil {
		return nil, err
	}
	files := &openSegments{dir: dir, files: map[string]*os.File{}}
	defer files.close()
	if m.Messages, err = exportMessages(ctx, files, key, out, sel.messages); err != nil {
		return nil, err
	}
	if err := addDeliveries(ctx, ir, files, key, rep.HeadSeq, m.Messages); err != nil {
		return nil, err
	}
	refusals, err := decryptAll[RefusalRecord](ctx, files, key, sel.refusals, "refusal")
	if err != nil {
		return nil, err
	}
	m.Refusals = linkRefusals(refusals, m.Messages)
	consents, err := decryptAll[record.ConsentEvent](ctx, files, key, sel.consents, "consent")
	if err != nil {
		return nil, err
	}
	if m.Evidence, err = exportEvidence(ctx, files, key, out, sel.evidence); err != nil {
		return nil, err
	}
	if m.Activity, err = exportActivity(ctx, files, key, sel.activity); err != nil {
		return nil, err
	}
	m.Archive.RecordsAfterHead = rep.RecordsAfterHead
	rep.RecordsChecked = len(m.Archive.Problems) == 0
	m.Archive.RecordsChecked = rep.RecordsChecked
	sort.SliceStable(m.Messages, func(i, j int) bool { return m.Messages[i].Time.Before(m.Messages[j].Time) })
	rep.Messages, rep.Refusals = len(m.Messages), len(m.Refusals)
	rep.Evidence, rep.Activity = len(m.Evidence), len(m.Activity)
	return &chainExport{node: node, dir: dir, rep: rep, m: m, consents: consents, sealPub: sealPub, signer: signer}, nil
}

// linkRefusals pairs each refusal with the message its submission became
// when the other recipients got it.
func linkRefusals(refusals []RefusalRecord, msgs []manifestMessage) []manifestRefusal {
	byRef := map[string]string{}
	for _, m := range msgs {
		for _, n := range m.NotSentTo {
			if n.Ref != "" {
				byRef[n.Ref] = m.ID
			}
		}
	}
	out := make([]manifestRefusal, 0, len(refusals))
	for _, r := range refusals {
		mr := manifestRefusal{RefusalRecord: r}
		if r.Recipient != "" {
			mr.Message = byRef[r.Ref]
		}
		out = append(out, mr)
	}
	return out
}

// outsideArchive refuses an export folder inside the archive's: nothing is
// ever written there.
func outsideArchive(dir, out string) error {
	d, err1 := filepath.Abs(dir)
	o, err2 := filepath.Abs(out)
	if err1 != nil || err2 != nil {
		return errors.Join(err1, err2)
	}
	if rel, err := filepath.Rel(d, o); err == nil && (rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../"))) {
		return fmt.Errorf("%s is inside the archive folder %s: export into a folder outside it (nothing is ever written into the archive)", out, dir)
	}
	return nil
}

// exportSigner is the seal key as the OpenPGP key that signs SHA256SUMS;
// it must be the key whose public half (seal.pub) the archive's seals
// verify with.
func exportSigner(dir string) (*openpgp.Entity, error) {
	priv, err := readSealKey(dir)
	if err != nil {
		return nil, err
	}
	pub, err := readSealPub(dir)
	if err != nil {
		return nil, err
	}
	if !pub.Equal(priv.Public()) {
		return nil, fmt.Errorf("archive: %s does not belong to %s: the export could not be signed with the archive's seal key", filepath.Join(dir, "seal.key"), filepath.Join(dir, "seal.pub"))
	}
	return sealEntity(priv)
}

// exportSelection is what an export holds, in chain order.
type exportSelection struct {
	messages, refusals, consents []located
	// evidence: the scans behind the consents listed, which are not
	// limited to the window (a consent signed years ago still covers
	// today's mail). activity: in the window. For a client, those whose
	// header names one of their address hashes (an activity record
	// without addresses is about no client).
	evidence, activity []located
	// afterHead counts the records written after the chain head.
	afterHead int
}

// selectRecords finds through the index the records f selects up to the
// chain head headSeq; the delivery events of the messages are found later,
// by their ids.
func selectRecords(ctx context.Context, ir *indexReader, hashKey []byte, f Filter, headSeq uint64) (*exportSelection, error) {
	var clients []string
	for _, c := range f.Clients {
		clients = append(clients, addrHash(hashKey, c))
	}
	sel := &exportSelection{}
	var err error
	inRange := recordQuery{since: f.Since, until: f.Until, addrs: clients, maxSeq: headSeq}
	for _, q := range []struct {
		kind string
		to   *[]located
	}{{kindMessage, &sel.messages}, {kindRefusal, &sel.refusals}, {kindActivity, &sel.activity}} {
		qq := inRange
		qq.kinds = []string{q.kind}
		if *q.to, err = ir.findOrRebuild(ctx, qq); err != nil {
			return nil, err
		}
	}
	if sel.consents, err = ir.findOrRebuild(ctx, recordQuery{kinds: []string{kindConsent}, addrs: clients, maxSeq: headSeq}); err != nil {
		return nil, err
	}
	if sel.evidence, err = ir.findOrRebuild(ctx, recordQuery{kinds: []string{kindEvidence}, addrs: clients, maxSeq: headSeq}); err != nil {
		return nil, err
	}
	// What the relay wrote since the chain head was settled.
	sel.afterHead, err = ir.countAfter(ctx, headSeq)
	return sel, err
}

// exportHead settles the chain head an export holds the records up to:
// the one a whole verification reached (VerifyAll), or the newest record,
// compared with the head file. exportVerified runs once it is settled.
func exportHead(dir string, ir *indexReader, headFile exportHeadFile, o ExportOptions, rep *ExportReport, m *manifest) error {
	defer exportVerified()
	if o.VerifyAll {
		vrep, verr := VerifyWith(dir, nil, VerifyOptions{HeadFile: o.HeadFile})
		if vrep == nil {
			return verr
		}
		m.Archive.ChainHeadSeq, m.Archive.ChainHead, m.Archive.Verified, m.Archive.Problems = vrep.HeadSeq, vrep.Head, verr == nil, vrep.Problems
		rep.HeadSeq, rep.Head, rep.Verified = vrep.HeadSeq, vrep.Head, verr == nil
		return nil
	}
	last := ir.last()
	rep.HeadSeq, rep.Head = last.h.Seq, last.hash
	m.Archive.ChainHeadSeq, m.Archive.ChainHead = rep.HeadSeq, rep.Head
	if p := headFile.check(ir, last); p != "" {
		m.Archive.Problems = append(m.Archive.Problems, p)
	}
	return nil
}

// exportHeadFile is the head file an export compares its chain head with,
// read before the archive: the relay only writes the archive further
// after it, so it cannot look ahead of what the export reads.
type exportHeadFile struct {
	path    string
	head    *headFile // nil: none to compare with (or problem says why)
	problem string
}

// readExportHead reads the head file at path ("": next to the archive).
func readExportHead(dir, path string) exportHeadFile {
	given := path != ""
	if !given {
		path = HeadFile(dir)
	}
	h := exportHeadFile{path: path}
	slots, err := readHead(path)
	if errors.Is(err, os.ErrNotExist) && !given {
		return h
	}
	if err != nil {
		h.problem = fmt.Sprintf("head file: %v", err)
		return h
	}
	pub, err := readSealPub(dir)
	if err != nil {
		h.problem = err.Error()
		return h
	}
	if h.head, _, _ = slots.newest(pub); h.head == nil {
		h.problem = fmt.Sprintf("the head file %s is not signed with the archive's seal key", path)
	}
	return h
}

// check compares the head file with the chain as the reader sees it: its
// record must be there, unchanged, and not after the newest. It returns
// the problem, "" when none.
func (h exportHeadFile) check(ir *indexReader, last indexRow) string {
	hf := h.head
	if hf == nil {
		return h.problem
	}
	if hf.Seq > last.h.Seq {
		return fmt.Sprintf("%s: the head file %s says the chain reached %s, the archive ends at %d", missingFromEnd(hf.Seq-last.h.Seq), h.path, hf, last.h.Seq)
	}
	hash, first, err := ir.hashOf(hf.Seq)
	switch {
	case err != nil:
		return fmt.Sprintf("the record the head file names: %v", err)
	case hash == hf.Hash:
		return ""
	case hash == "" && hf.Seq < first:
		return "" // pruned since: the relay's own head file is past every prune record
	}
	return fmt.Sprintf("record %d, which the head file %s names, is not in the archive as it names it: the chain was rewritten", hf.Seq, h.path)
}

// exportMessages decrypts the message records into out/messages, on every
// core (each streams into its own file), and returns their manifest
// entries in chain order.
func exportMessages(ctx context.Context, files *openSegments, key openpgp.EntityList, out string, msgs []located) ([]manifestMessage, error) {
	type exported struct {
		meta, head []byte
		size       int64
		sum, file  string
		err        error
	}
	entries := []manifestMessage{}
	err := inOrder(ctx, len(msgs), func(i int) exported {
		l := msgs[i]
		// The header's ID is the metadata's: the file can be named before
		// the metadata (after the body) is read.
		r := exported{file: "messages/" + safeName(l.h.ID) + ".eml"}
		r.meta, r.head, r.size, r.sum, r.err = files.exportMessage(l, key, filepath.Join(out, r.file))
		return r
	}, func(i int, r exported) error {
		l := msgs[i]
		if r.err != nil {
			return fmt.Errorf("record %d (message %s): %w", l.h.Seq, l.h.ID, r.err)
		}
		var meta messageMeta
		if err := json.Unmarshal(r.meta, &meta); err != nil {
			return fmt.Errorf("record %d: metadata: %w", l.h.Seq, err)
		}
		entries = append(entries, newManifestMessage(&meta, r.sum, r.size, r.file, namedIn(r.head)))
		return nil
	})
	return entries, err
}

// addDeliveries adds what the event records say became of each recipient's
// copy to the messages they are about; the events are found by the
// messages' ids, a few hundred at a time.
func addDeliveries(ctx context.Context, ir *indexReader, files *openSegments, key openpgp.EntityList, headSeq uint64, msgs []manifestMessage) error {
	byID := map[string]*manifestMessage{}
	var ids []string
	for i := range msgs {
		byID[msgs[i].ID] = &msgs[i]
		ids = append(ids, msgs[i].ID)
	}
	for len(ids) > 0 {
		n := min(len(ids), 500)
		events, err := ir.findOrRebuild(ctx, recordQuery{kinds: []string{kindEvent}, ids: ids[:n], maxSeq: headSeq})
		if err != nil {
			return err
		}
		ids = ids[n:]
		for _, l := range events {
			if err := addDelivery(files, key, l, byID[l.h.ID]); err != nil {
				return err
			}
		}
	}
	return nil
}

func addDelivery(files *openSegments, key openpgp.EntityList, l located, mm *manifestMessage) error {
	if mm == nil {
		return nil
	}
	_, metaJSON, err := files.decrypt(l, key)
	if err != nil {
		return fmt.Errorf("record %d (event): %w", l.h.Seq, err)
	}
	var ev Event
	if err := json.Unmarshal(metaJSON, &ev); err != nil {
		return err
	}
	d := manifestDelivery{Status: ev.Kind, Time: ev.Time, Reply: ev.Reply}
	for _, rcpt := range ev.Recipients {
		for i := range mm.Recipients {
			if strings.EqualFold(mm.Recipients[i].Address, rcpt) || matchesAddress(mm.Recipients[i].Address, rcpt) {
				mm.Recipients[i].Delivery = append(mm.Recipients[i].Delivery, d)
			}
		}
	}
	if len(ev.Recipients) == 0 { // about the whole message (aborted, dropped)
		for i := range mm.Recipients {
			mm.Recipients[i].Delivery = append(mm.Recipients[i].Delivery, d)
		}
	}
	return nil
}

// decryptAll decrypts records whose metadata is a T (what names them in
// errors), on every core, and returns them in order.
func decryptAll[T any](ctx context.Context, files *openSegments, key openpgp.EntityList, records []located, what string) ([]T, error) {
	type decrypted struct {
		v   T
		err error
	}
	out := make([]T, 0, len(records))
	err := inOrder(ctx, len(records), func(i int) decrypted {
		var d decrypted
		_, metaJSON, err := files.decrypt(records[i], key)
		if err != nil {
			d.err = fmt.Errorf("record %d (%s): %w", records[i].h.Seq, what, err)
		} else {
			d.err = json.Unmarshal(metaJSON, &d.v)
		}
		return d
	}, func(i int, d decrypted) error {
		out = append(out, d.v)
		return d.err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
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

// exportMessage decrypts a message record into the file path, streaming:
// a 25 MB attachment is never held in memory. It returns the metadata, the
// message's start (where its header is), and the body's size and SHA-256.
// The file gets its name only when the record checked out whole, its
// metadata naming the message its header does.
func (o *openSegments) exportMessage(l located, key openpgp.EntityList, path string) (meta, head []byte, size int64, sum string, err error) {
	p, err := o.decryptPartial(l, key, filepath.Dir(path))
	if err != nil {
		return nil, nil, 0, "", err
	}
	defer func() {
		if err != nil {
			p.discard()
		}
	}()
	if err := sameMessage(l, p.meta); err != nil {
		return nil, nil, 0, "", err
	}
	head = make([]byte, min(p.size, maxNamedHeader))
	if err := p.readAt(head, 0); err != nil {
		return nil, nil, 0, "", err
	}
	if err := p.keepAs(path); err != nil {
		return nil, nil, 0, "", err
	}
	return p.meta, head, p.size, p.sum, nil
}

// partialRecord is a record decrypted into a temporary file beside where
// it is to go: the file holds its body, meta the metadata that followed
// it. Written under a temporary name and renamed when whole, so an
// interrupted export leaves no file that looks complete.
type partialRecord struct {
	f    *os.File
	path string
	meta []byte
	size int64
	sum  string // the body's SHA-256, hex
}

// decryptPartial decrypts record l into dir; on an error nothing is left.
func (o *openSegments) decryptPartial(l located, key openpgp.EntityList, dir string) (p *partialRecord, err error) {
	tmp := filepath.Join(dir, fmt.Sprintf(".record-%d.partial", l.h.Seq))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	rec := &partialRecord{f: f, path: tmp}
	defer func() {
		if err != nil {
			rec.discard()
		}
	}()
	p = rec
	n, err := o.decryptTo(l, key, f)
	if err != nil {
		return nil, err
	}
	if p.size, err = splitAt(n, p.readAt); err != nil {
		return nil, err
	}
	p.meta = make([]byte, n-4-p.size)
	if err := p.readAt(p.meta, p.size); err != nil {
		return nil, err
	}
	if err := f.Truncate(p.size); err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, p.size)); err != nil {
		return nil, err
	}
	p.sum = hex.EncodeToString(h.Sum(nil))
	return p, nil
}

func (p *partialRecord) readAt(b []byte, off int64) error {
	_, err := p.f.ReadAt(b, off)
	return err
}

// keepAs gives the whole record its name.
func (p *partialRecord) keepAs(path string) error {
	if err := p.f.Close(); err != nil {
		return err
	}
	return os.Rename(p.path, path)
}

func (p *partialRecord) discard() {
	p.f.Close()
	os.Remove(p.path)
}
