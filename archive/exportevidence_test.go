package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"

	"github.com/sealpost/sealpost/record"
)

// testPDF is a small real PDF (one A4 page saying text), as a scanner's
// would be, that pdfcpu validates.
func testPDF(t testing.TB, text string) []byte {
	t.Helper()
	api.DisableConfigDir()
	xt, err := pdfcpu.CreateXRefTableWithRootDict()
	if err != nil {
		t.Fatal(err)
	}
	font, _ := xt.IndRefForNewObject(types.Dict{"Type": types.Name("Font"), "Subtype": types.Name("Type1"), "BaseFont": types.Name("Helvetica")})
	content := []byte("BT /F1 14 Tf 72 770 Td (" + text + ") Tj ET")
	sd, _ := xt.NewStreamDictForBuf(content)
	if err := sd.Encode(); err != nil {
		t.Fatal(err)
	}
	contents, _ := xt.IndRefForNewObject(*sd)
	pages := types.Dict{"Type": types.Name("Pages"), "Count": types.Integer(1),
		"MediaBox": types.Array{types.Integer(0), types.Integer(0), types.Integer(595), types.Integer(842)}}
	pagesRef, _ := xt.IndRefForNewObject(pages)
	page, _ := xt.IndRefForNewObject(types.Dict{"Type": types.Name("Page"), "Parent": *pagesRef, "Contents": *contents,
		"Resources": types.Dict{"Font": types.Dict{"F1": *font}}})
	pages["Kids"] = types.Array{*page}
	root, err := xt.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	root.Insert("Pages", *pagesRef)
	xt.PageCount = 1
	var b bytes.Buffer
	if err := api.WriteContext(pdfcpu.CreateContext(xt, model.NewDefaultConfiguration()), &b); err != nil {
		t.Fatal(err)
	}
	if err := api.Validate(bytes.NewReader(b.Bytes()), nil); err != nil {
		t.Fatalf("the test PDF does not validate: %v", err)
	}
	return b.Bytes()
}

// evidenceArchive is an archive with messages to two clients, each
// client's consent recorded in the console with a scan (dora's a PDF,
// emil's a PNG), and the console's activity records: one per consent, one
// naming no client. It returns the fixture and the two documents.
func evidenceArchive(t *testing.T) (f *fixture, pdf, png []byte) {
	t.Helper()
	f = newFixture(t)
	a := f.open(t, 0)
	defer a.Close()
	ctx := context.Background()
	pdf = testPDF(t, "Consent form v3, signed by Dora Q")
	png = append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("emil's form "), 200)...)
	for i, c := range []struct {
		addr, client, filename, typ string
		doc                         []byte
	}{
		{"dora@client.example", "Dora Q", "consent.pdf.exe", "application/pdf", pdf},
		{"emil@client.example", "Emil R", "form.pdf", "image/png", png},
	} {
		m, body := testMessage(i+1, c.addr)
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		id, err := a.RecordEvidence(ctx, Evidence{Addresses: []string{c.addr}, Client: c.client, Filename: c.filename, Type: c.typ, RecordedBy: "office (console)"}, c.doc)
		if err != nil {
			t.Fatal(err)
		}
		ev := record.ConsentEvent{ID: int64(i + 1), Kind: record.ConsentGiven, Client: c.client, Addresses: []string{c.addr}, Signed: "2026-12-01",
			Evidence: "Consent form v3 (scan " + id + " in the archive)", RecordedBy: "office (console)", RecordedAt: f.clock()}
		if err := a.RecordConsent(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if err := a.RecordActivity(ctx, Activity{Who: "office", Role: "admin", What: "consent-recorded", Object: "consent " + string(rune('1'+i)), From: "192.0.2.7", Addresses: []string{c.addr}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.RecordActivity(ctx, Activity{Who: "office", Role: "admin", What: "key-removed", Object: "ABCD 1234", From: "192.0.2.7"}); err != nil {
		t.Fatal(err)
	}
	return f, pdf, png
}

// TestExportEvidence: an export holds the scans its selection covers as
// evidence/ID.pdf|png (the type read from the bytes, not the uploaded
// name), byte for byte, listed in the manifest with their SHA-256 and in
// SHA256SUMS (`sha256sum -c` passes); each consent event links its scan;
// the activity is in the manifest. A --client export holds that client's
// scan and activity only.
func TestExportEvidence(t *testing.T) {
	f, pdf, png := evidenceArchive(t)
	pdfID, pngID := EvidenceID(pdf), EvidenceID(png)
	for _, tt := range []struct {
		name     string
		filter   Filter
		want     map[string][]byte // file -> document
		activity []string          // what, in order
	}{
		{"everything", Filter{}, map[string][]byte{"evidence/" + pdfID + ".pdf": pdf, "evidence/" + pngID + ".png": png},
			[]string{"consent-recorded", "consent-recorded", "key-removed"}},
		{"--client dora", Filter{Clients: []string{"Dora@Client.example"}, ClientName: "Dora Q"}, map[string][]byte{"evidence/" + pdfID + ".pdf": pdf},
			[]string{"consent-recorded"}},
		{"--client emil", Filter{Clients: []string{"emil@client.example"}}, map[string][]byte{"evidence/" + pngID + ".png": png},
			[]string{"consent-recorded"}},
		// The consents are listed whatever the window, and so are the
		// scans behind them; the activity is the window's.
		{"a window before the scans", Filter{Until: f.now}, map[string][]byte{"evidence/" + pdfID + ".pdf": pdf, "evidence/" + pngID + ".png": png}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "export")
			rep, err := Export(context.Background(), f.dir, f.priv, out, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			var m manifest
			mb, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
			if err := json.Unmarshal(mb, &m); err != nil {
				t.Fatal(err)
			}
			if rep.Evidence != len(tt.want) || len(m.Evidence) != len(tt.want) {
				t.Fatalf("%d evidence records exported (report %d), want %d: %+v", len(m.Evidence), rep.Evidence, len(tt.want), m.Evidence)
			}
			files, _ := filepath.Glob(filepath.Join(out, "evidence", "*"))
			hidden, _ := filepath.Glob(filepath.Join(out, "evidence", ".*"))
			if len(files)+len(hidden) != len(tt.want) {
				t.Errorf("evidence/ holds %v %v", files, hidden)
			}
			sums, _ := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
			for _, e := range m.Evidence {
				doc, ok := tt.want[e.File]
				got, err := os.ReadFile(filepath.Join(out, e.File))
				if !ok || err != nil || !bytes.Equal(got, doc) {
					t.Errorf("%s: %d bytes (%v), want the document recorded (listed %v)", e.File, len(got), err, ok)
					continue
				}
				sum := sha256.Sum256(doc)
				if e.SHA256 != hex.EncodeToString(sum[:]) || e.Size != int64(len(doc)) || e.RecordedBy != "office (console)" || len(e.Addresses) != 1 || e.Time.IsZero() {
					t.Errorf("manifest entry %+v", e)
				}
				if !strings.Contains(string(sums), e.SHA256+"  "+e.File+"\n") {
					t.Errorf("SHA256SUMS does not list %s with its SHA-256", e.File)
				}
			}
			linked := 0
			for _, c := range m.Consent {
				if c.EvidenceFile != "" {
					linked++
					if _, ok := tt.want[c.EvidenceFile]; !ok || !strings.Contains(c.Evidence, strings.TrimSuffix(filepath.Base(c.EvidenceFile), filepath.Ext(c.EvidenceFile))) {
						t.Errorf("consent %d (%s) links %s", c.ID, c.Evidence, c.EvidenceFile)
					}
				}
			}
			if linked != len(tt.want) {
				t.Errorf("%d consent events link a scan, want %d", linked, len(tt.want))
			}
			var whats []string
			for _, a := range m.Activity {
				whats = append(whats, a.What)
				if a.Who != "office" || a.Role != "admin" || a.From != "192.0.2.7" || a.Time.IsZero() {
					t.Errorf("activity %+v", a)
				}
			}
			if !slices.Equal(whats, tt.activity) || rep.Activity != len(tt.activity) {
				t.Errorf("activity %v (report %d), want %v", whats, rep.Activity, tt.activity)
			}
			index, _ := os.ReadFile(filepath.Join(out, "index.html"))
			for file := range tt.want {
				if !strings.Contains(string(index), `<a href="`+file+`">`) {
					t.Errorf("index.html does not link %s", file)
				}
			}
			if _, err := exec.LookPath("sha256sum"); err == nil {
				cmd := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
				cmd.Dir = out
				if o, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("sha256sum -c: %v\n%s", err, o)
				}
			}
		})
	}
}

// TestExportOfDamagedEvidence: a scan that is not the document its record
// describes stops the export, and no file of it is left, as with a damaged
// message record.
func TestExportOfDamagedEvidence(t *testing.T) {
	f := newFixture(t)
	a := f.open(t, 0)
	doc := testPDF(t, "Consent form")
	// Recorded as the console would never record it: the description's
	// hash is another document's.
	payload, _, err := a.encrypt(Evidence{Time: f.clock(), Addresses: []string{"dora@client.example"}, Filename: "consent.pdf", Type: "application/pdf",
		Size: int64(len(doc)), SHA256: strings.Repeat("0", 64)}, bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.submit(context.Background(), header{Kind: kindEvidence, ID: EvidenceID(doc), Addrs: []string{a.addrHash("dora@client.example")}}, payload); err != nil {
		t.Fatal(err)
	}
	a.Close()
	out := filepath.Join(t.TempDir(), "export")
	_, err = Export(context.Background(), f.dir, f.priv, out, Filter{})
	if err == nil || !strings.Contains(err.Error(), "is not the one its record describes") {
		t.Fatalf("export: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(out, "evidence", "*")); len(left) > 0 {
		t.Errorf("the export left %v", left)
	}
	if left, _ := filepath.Glob(filepath.Join(out, "evidence", ".*")); len(left) > 0 {
		t.Errorf("the export left %v", left)
	}
}
