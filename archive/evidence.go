package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// kindEvidence is a record that holds a document proving a consent (the
// scan of a signed form), encrypted like every payload.
const kindEvidence = "evidence"

// Evidence describes a scan of a signed form kept in the record. Its
// content is the record's body; its id ("scan-" and the first 16 hex
// digits of its SHA-256) is in the record's clear header, and the consent
// event it proves names that id in its evidence text.
type Evidence struct {
	Time       time.Time `json:"time"`
	Addresses  []string  `json:"addresses"`
	Client     string    `json:"client,omitempty"`
	Filename   string    `json:"filename"`
	Type       string    `json:"type"` // sniffed: application/pdf, image/jpeg, image/png
	Size       int64     `json:"size"`
	SHA256     string    `json:"sha256"`
	RecordedBy string    `json:"recorded_by"`
}

// EvidenceID is the id of the evidence record of a document.
func EvidenceID(doc []byte) string {
	sum := sha256.Sum256(doc)
	return "scan-" + hex.EncodeToString(sum[:8])
}

// RecordEvidence archives a document proving a consent and returns its id,
// once the record is on disk (fsynced): the consent is recorded after it,
// so no consent claims a scan the record lacks.
func (a *Archive) RecordEvidence(ctx context.Context, e Evidence, doc []byte) (string, error) {
	if len(doc) == 0 {
		return "", errors.New("archive: an evidence record needs its document")
	}
	sum := sha256.Sum256(doc)
	e.Size, e.SHA256 = int64(len(doc)), hex.EncodeToString(sum[:])
	if e.Time.IsZero() {
		e.Time = a.opts.Now().UTC()
	}
	payload, _, err := a.encrypt(e, bytes.NewReader(doc))
	if err != nil {
		return "", err
	}
	id := EvidenceID(doc)
	h := header{Kind: kindEvidence, ID: id}
	for _, x := range e.Addresses {
		h.Addrs = append(h.Addrs, a.addrHash(x))
	}
	return id, a.submit(ctx, h, payload)
}
