package console

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

var (
	pdfScan  = []byte("%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n")
	pngScan  = append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), make([]byte, 64)...)
	jpegScan = append([]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), make([]byte, 64)...)
)

// TestConsentUpload: a consent with its scan is recorded for the refused
// address only; the scan's type is taken from its content (a page posing
// as a PDF is refused), and a scan over 10 MB is refused; nothing is
// recorded when anything is wrong.
func TestConsentUpload(t *testing.T) {
	form := func(address string) url.Values {
		return url.Values{"address": {address}, "client": {"Dora Q"}, "evidence": {"Consent form v3, cabinet 2"}, "signed": {"2026-12-01"}, "expires": {"2027-12-01"}}
	}
	tests := []struct {
		name, address, filename string
		scan                    []byte
		code                    int
		wantType                string // "" with code 303: no scan
		says                    string
	}{
		{"a PDF", "dora@client.example", "form.pdf", pdfScan, http.StatusSeeOther, "application/pdf", ""},
		{"a PNG", "Dora@Client.Example", "form.png", pngScan, http.StatusSeeOther, "image/png", ""},
		{"a JPEG named .pdf", "dora@client.example", "form.pdf", jpegScan, http.StatusSeeOther, "image/jpeg", ""},
		{"no scan", "dora@client.example", "", nil, http.StatusSeeOther, "", ""},
		{"HTML named .pdf", "dora@client.example", "form.pdf", []byte("<html><script>alert(1)</script>"), http.StatusUnprocessableEntity, "", "is not a PDF, JPEG or PNG file"},
		{"over 10 MB", "dora@client.example", "big.pdf", append(append([]byte{}, pdfScan...), make([]byte, 10<<20)...), http.StatusUnprocessableEntity, "", "larger than 10 MB"},
		{"far over 10 MB", "dora@client.example", "huge.pdf", append(append([]byte{}, pdfScan...), make([]byte, 12<<20)...), http.StatusRequestEntityTooLarge, "", "at most 10 MB"},
		{"another address", "dora@client.example.org", "form.pdf", pdfScan, http.StatusUnprocessableEntity, "", "is not the recipient refused under R7K2QX"},
		{"not an address", "dora", "form.pdf", pdfScan, http.StatusUnprocessableEntity, "", "is not an address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := startConsole(t)
			admin := tc.loggedIn(t, "office")
			admin.get("/refusals/R7K2QX")
			field := "scan"
			if tt.scan == nil {
				field = ""
			}
			resp, body := admin.postFile("/refusals/R7K2QX/consent", form(tt.address), field, tt.filename, tt.scan)
			if resp.StatusCode != tt.code {
				t.Fatalf("%s, want %d\n%s", resp.Status, tt.code, body)
			}
			if tt.says != "" && !strings.Contains(body, tt.says) {
				t.Errorf("the page does not say %q:\n%s", tt.says, body)
			}
			if tt.code != http.StatusSeeOther {
				if len(tc.recorder.consents) != 0 {
					t.Errorf("recorded %v", tc.recorder.consents)
				}
				return
			}
			if location(resp) != "/refusals/R7K2QX?done=consent" || len(tc.recorder.consents) != 1 {
				t.Fatalf("to %s, consents %v", location(resp), tc.recorder.consents)
			}
			ev, scan := tc.recorder.consents[0], tc.recorder.scans[0]
			if ev.Addresses[0] != "dora@client.example" || ev.Evidence != "Consent form v3, cabinet 2" || ev.Signed != "2026-12-01" ||
				ev.Expires != "2027-12-01" || ev.Client != "Dora Q" || ev.RecordedBy != "office (console)" {
				t.Errorf("consent %+v", ev)
			}
			switch {
			case tt.wantType == "" && scan != nil:
				t.Errorf("a scan %+v when none was sent", scan)
			case tt.wantType != "" && (scan == nil || scan.Type != tt.wantType || !bytes.Equal(scan.Data, tt.scan) || scan.Filename != tt.filename):
				t.Errorf("scan %v, want %s of %d bytes", scan, tt.wantType, len(tt.scan))
			}
			if _, body := admin.get(location(resp)); !strings.Contains(body, "The consent is recorded") {
				t.Errorf("the page after does not say it is recorded")
			}
		})
	}
}

// TestKeyAndPassphraseFixes: a pasted key for the refused address is
// imported; one that is not a key, or a passphrase typed differently
// twice, is refused with the reason, and no passphrase is shown again.
func TestKeyAndPassphraseFixes(t *testing.T) {
	tc := startConsole(t)
	admin := tc.loggedIn(t, "office")
	admin.get("/refusals/R7K2QX")
	key := "-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n-----END PGP PUBLIC KEY BLOCK-----\n"
	if resp, body := admin.post("/refusals/R7K2QX/key", url.Values{"address": {"dora@client.example"}, "key": {key}}); location(resp) != "/refusals/R7K2QX?done=key" {
		t.Errorf("a key: %s to %s\n%s", resp.Status, location(resp), body)
	}
	if resp, body := admin.post("/refusals/R7K2QX/key", url.Values{"address": {"dora@client.example"}, "key": {"hello"}}); resp.StatusCode != http.StatusUnprocessableEntity ||
		!strings.Contains(body, "The key was not imported: no OpenPGP key in it") {
		t.Errorf("not a key: %s\n%s", resp.Status, body)
	}
	resp, body := admin.post("/refusals/R7K2QX/passphrase", url.Values{"address": {"dora@client.example"}, "passphrase": {"blue harbour lantern"}, "passphrase_again": {"blue harbor lantern"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "The two passphrases differ") || strings.Contains(body, "lantern") {
		t.Errorf("two different passphrases: %s\n%s", resp.Status, body)
	}
	resp, _ = admin.post("/refusals/R7K2QX/passphrase", url.Values{"address": {"dora@client.example"}, "passphrase": {"blue harbour lantern"}, "passphrase_again": {"blue harbour lantern"}})
	if location(resp) != "/refusals/R7K2QX?done=passphrase" || len(tc.recorder.passphrases) != 1 {
		t.Errorf("a passphrase: %s to %s", resp.Status, location(resp))
	}
	if strings.Contains(tc.logs.String(), "lantern") {
		t.Error("the passphrase is in the log")
	}
	// A recipient the registry knows is named, and the forms start with
	// their address.
	_, body = admin.get("/refusals/M4TJ7C")
	if m := contains(body, "the recipient eli@client.example", `name="address" type="email" required value="eli@client.example"`); len(m) > 0 {
		t.Errorf("ben's refusal lacks %v", m)
	}
	// A refusal the forms cannot fix (ben's expired consent is fixable, a
	// content rule is not) shows no forms.
	tc.refusals.list = append(tc.refusals.list, Refusal{Time: tc.clock(), Ref: "W9XC3D", Code: "content_rule", Account: "anna"})
	if _, body = admin.get("/refusals/W9XC3D"); strings.Contains(body, "Record what is missing") || !strings.Contains(body, "content rule") {
		t.Errorf("a content rule's refusal:\n%s", body)
	}
}

// FuzzSniffScan: whatever the bytes, a scan is taken only as one of the
// three types and only when it begins with that type's signature; a page
// of markup is never taken. (A scan is never served back, so a file that
// is also something else after its signature does no harm.)
func FuzzSniffScan(f *testing.F) {
	for _, seed := range [][]byte{pdfScan, pngScan, jpegScan, []byte("<html>"), []byte("%PDF"), nil} {
		f.Add(seed)
	}
	magic := map[string]string{"application/pdf": "%PDF-", "image/jpeg": "\xff\xd8\xff", "image/png": "\x89PNG\r\n\x1a\n"}
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, ok := sniffScan(data)
		if !ok {
			return
		}
		sig, known := magic[typ]
		if !known || !bytes.HasPrefix(data, []byte(sig)) {
			t.Fatalf("%q taken as %s", data[:min(len(data), 16)], typ)
		}
	})
}
