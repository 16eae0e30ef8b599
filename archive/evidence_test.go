package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestRecordEvidence: a scan goes into the record encrypted (its bytes are
// nowhere in the segment in clear), found by its id and the client's
// address hash, and the archive key gives back the very document and its
// description; verify still passes.
func TestRecordEvidence(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	defer a.Close()
	doc := append([]byte("%PDF-1.7\nSigned consent of dora\n"), bytes.Repeat([]byte("scan"), 5000)...)
	id, err := a.RecordEvidence(context.Background(), Evidence{Addresses: []string{"dora@client.example"}, Client: "Dora Q",
		Filename: "consent.pdf", Type: "application/pdf", RecordedBy: "office (console)"}, doc)
	if err != nil || id != EvidenceID(doc) || len(id) != len("scan-")+16 {
		t.Fatalf("RecordEvidence: %q %v", id, err)
	}
	if _, err := a.RecordEvidence(context.Background(), Evidence{}, nil); err == nil {
		t.Error("an evidence record without its document")
	}
	a.Close()
	segs, _ := listSegments(f.dir)
	var found *located
	walk(f.dir, func(l located) {
		if l.h.Kind == kindEvidence {
			found = &l
		}
	})
	if found == nil || found.h.ID != id || len(found.h.Addrs) != 1 || found.h.Addrs[0] != a.addrHash("dora@client.example") {
		t.Fatalf("evidence record %+v", found)
	}
	for _, s := range segs {
		raw, _ := os.ReadFile(filepath.Join(f.dir, s))
		if bytes.Contains(raw, []byte("Signed consent of dora")) || bytes.Contains(raw, []byte("consent.pdf")) {
			t.Fatalf("%s holds the scan or its name in clear", s)
		}
	}
	o := &openSegments{dir: f.dir, files: map[string]*os.File{}}
	defer o.close()
	body, meta, err := o.decrypt(*found, f.priv)
	if err != nil || !bytes.Equal(body, doc) {
		t.Fatalf("decrypted %d bytes, %v", len(body), err)
	}
	var e Evidence
	if err := json.Unmarshal(meta, &e); err != nil || e.Size != int64(len(doc)) || e.Type != "application/pdf" || e.Filename != "consent.pdf" || e.RecordedBy != "office (console)" {
		t.Errorf("description %+v %v", e, err)
	}
	rep, err := VerifyWith(f.dir, io.Discard, VerifyOptions{NoHead: true})
	if err != nil || len(rep.Problems) > 0 {
		t.Errorf("verify: %+v %v", rep, err)
	}
}
