package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/record"
)

// manifestEvidence is an evidence record as exported: the document is the
// file, its SHA-256 the one the record holds.
type manifestEvidence struct {
	ID string `json:"id"`
	Evidence
	File string `json:"file"`
	Node string `json:"node,omitempty"`
}

// exportedConsent is a consent event with the scan its evidence names,
// when the export holds that scan.
type exportedConsent struct {
	record.ConsentEvent
	EvidenceFile string `json:"evidence_file,omitempty"`
}

// scanExt is the file extension of each type a scan may have; the type is
// sniffed from the document's own bytes, as the console did when it took
// the upload: a filename says nothing an auditor can rely on.
var scanExt = map[string]string{"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png"}

// exportEvidence decrypts the evidence records into out/evidence, on every
// core (each streams into its own file), and returns their manifest
// entries in chain order. A document that is not the one its record
// describes stops the export, as a damaged message record does.
func exportEvidence(ctx context.Context, files *openSegments, key openpgp.EntityList, out string, recs []located) ([]manifestEvidence, error) {
	entries := []manifestEvidence{}
	if len(recs) == 0 {
		return entries, nil
	}
	if err := os.MkdirAll(filepath.Join(out, "evidence"), 0o700); err != nil {
		return nil, err
	}
	type exported struct {
		e   manifestEvidence
		err error
	}
	err := inOrder(ctx, len(recs), func(i int) exported {
		e, err := files.exportEvidence(recs[i], key, out)
		return exported{e, err}
	}, func(i int, r exported) error {
		if r.err != nil {
			return fmt.Errorf("record %d (evidence %s): %w", recs[i].h.Seq, recs[i].h.ID, r.err)
		}
		entries = append(entries, r.e)
		return nil
	})
	return entries, err
}

// exportEvidence streams one evidence record's document into
// out/evidence/ID.EXT, under a temporary name until it checked out whole.
func (o *openSegments) exportEvidence(l located, key openpgp.EntityList, out string) (me manifestEvidence, err error) {
	p, err := o.decryptPartial(l, key, filepath.Join(out, "evidence"))
	if err != nil {
		return me, err
	}
	defer func() {
		if err != nil {
			p.discard()
		}
	}()
	if err := json.Unmarshal(p.meta, &me.Evidence); err != nil {
		return me, fmt.Errorf("metadata: %w", err)
	}
	me.Time = me.Time.UTC()
	// The id in the (hash-chained) header is the document's hash too: a
	// payload moved from another evidence record decrypts fine.
	if p.sum != me.SHA256 || p.size != me.Size || l.h.ID != "scan-"+p.sum[:16] {
		return me, fmt.Errorf("the document (%d octets, SHA-256 %s) is not the one its record describes (%s: %d octets, SHA-256 %s)", p.size, p.sum, l.h.ID, me.Size, me.SHA256)
	}
	sniff := make([]byte, min(p.size, 512))
	if err := p.readAt(sniff, 0); err != nil {
		return me, err
	}
	ext, ok := scanExt[http.DetectContentType(sniff)]
	if !ok {
		ext = "bin"
	}
	me.ID, me.File = l.h.ID, "evidence/"+safeName(l.h.ID)+"."+ext
	return me, p.keepAs(filepath.Join(out, me.File))
}

// scanIDIn finds the scan id a consent's evidence text names (the console
// adds "(scan scan-… in the archive)").
var scanIDIn = regexp.MustCompile(`\bscan-[0-9a-f]{16}\b`)

// linkEvidence gives each consent event the file of the scan its evidence
// names, when the export holds it.
func linkEvidence(consents []record.ConsentEvent, evidence []manifestEvidence) []exportedConsent {
	files := map[string]string{}
	for _, e := range evidence {
		files[e.ID] = e.File
	}
	out := make([]exportedConsent, 0, len(consents))
	for _, c := range consents {
		out = append(out, exportedConsent{ConsentEvent: c, EvidenceFile: files[scanIDIn.FindString(c.Evidence)]})
	}
	return out
}

// exportActivity decrypts the activity records: their payload has the
// role and the addresses the clear header leaves out.
func exportActivity(ctx context.Context, files *openSegments, key openpgp.EntityList, recs []located) ([]manifestActivity, error) {
	acts, err := decryptAll[Activity](ctx, files, key, recs, "activity")
	out := make([]manifestActivity, 0, len(acts))
	for _, a := range acts {
		a.Time = a.Time.UTC()
		out = append(out, manifestActivity{Activity: a})
	}
	return out, err
}
