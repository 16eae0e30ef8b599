package sealed

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

// pdfjsDir is where pdf.js (npm's pdfjs-dist) is installed for the tests:
// headless Chromium does not render PDFs itself (its viewer is an
// extension that headless mode leaves out), so a page renders it with
// pdf.js, as Firefox does.
func pdfjsDir() string {
	if d := os.Getenv("SEALPOST_PDFJS"); d != "" {
		return d
	}
	return "/opt/pdfjs/node_modules/pdfjs-dist"
}

// pdfjsPage opens the PDF with the passphrase, renders page 1 to a canvas
// and posts the canvas, as PNG, back to the test.
const pdfjsPage = `<!doctype html><html><body style="margin:0;background:#fff"><canvas id="c"></canvas>
<script type="module">
import * as pdfjs from '/pdfjs/build/pdf.min.mjs';
pdfjs.GlobalWorkerOptions.workerSrc = '/pdfjs/build/pdf.worker.min.mjs';
const report = (body) => fetch('/result', {method: 'POST', body: JSON.stringify(body)});
try {
  const doc = await pdfjs.getDocument({url: '/message.pdf', password: PASSWORD}).promise;
  const page = await doc.getPage(1);
  const viewport = page.getViewport({scale: 1.0});
  const canvas = document.getElementById('c');
  canvas.width = viewport.width; canvas.height = viewport.height;
  await page.render({canvas, canvasContext: canvas.getContext('2d'), viewport}).promise;
  const text = (await page.getTextContent()).items.map((i) => i.str).join(' ');
  const attachments = await doc.getAttachments();
  const files = attachments instanceof Map ? [...attachments.keys()] : Object.keys(attachments || {});
  await report({png: canvas.toDataURL('image/png'), text, files, pages: doc.numPages});
} catch (e) {
  await report({error: String(e)});
}
</script></body></html>`

// chromiumResult is what the page posts.
type chromiumResult struct {
	PNG   string   `json:"png"`
	Text  string   `json:"text"`
	Files []string `json:"files"`
	Pages int      `json:"pages"`
	Error string   `json:"error"`
}

// TestPDFRendersInChromium renders a sealed PDF's first page with pdf.js
// in headless Chromium and checks that it is not blank, that its text is
// there and that the attachments are listed.
func TestPDFRendersInChromium(t *testing.T) {
	pdfjs := pdfjsDir()
	testutil.RequireTools(t, "chromium", filepath.Join(pdfjs, "build", "pdf.min.mjs"))
	raw, _ := richMessage()
	s := seal(t, raw, testOptions())

	results := make(chan chromiumResult, 1)
	page := strings.Replace(pdfjsPage, "PASSWORD", jsString(testPassphrase), 1)
	mux := http.NewServeMux()
	mux.Handle("/pdfjs/", http.StripPrefix("/pdfjs/", http.FileServer(http.Dir(pdfjs))))
	mux.HandleFunc("/message.pdf", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "message.pdf", time.Time{}, bytes.NewReader(s.pdf))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	})
	mux.HandleFunc("/result", func(w http.ResponseWriter, r *http.Request) {
		var res chromiumResult
		if err := json.NewDecoder(r.Body).Decode(&res); err != nil {
			res.Error = "bad result: " + err.Error()
		}
		select {
		case results <- res:
		default:
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Chromium keeps the page open until it is stopped: the page reports
	// when it has rendered.
	cmd := exec.CommandContext(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--window-size=700,900", "http://"+ln.Addr().String()+"/")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() { cancel(); <-exited }()

	var res chromiumResult
	select {
	case res = <-results:
	case <-exited:
		t.Fatalf("Chromium ended before the page rendered\n%s", stderr.String())
	case <-ctx.Done():
		t.Fatalf("Chromium posted no rendering within 90 s\n%s", stderr.String())
	}
	if res.Error != "" {
		t.Fatalf("pdf.js in Chromium: %s", res.Error)
	}
	pngData, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(res.PNG, "data:image/png;base64,"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(pngData))
	if err != nil {
		t.Fatalf("the canvas: %v", err)
	}
	if n, total := countInk(img); n < total/200 {
		t.Errorf("Chromium's page 1 is blank: %d of %d pixels are not white", n, total)
	}
	for _, want := range []string{"SECRET-SUBJECT-MARKER", "Καλημέρα", "Здравствуйте", "Musterstraße"} {
		if !strings.Contains(res.Text, want) {
			t.Errorf("pdf.js's text of page 1 lacks %q: %s", want, res.Text)
		}
	}
	files := strings.Join(res.Files, "\n")
	for _, want := range []string{"message.eml", "message.txt", "Bericht für Ärztin – ώρα №5.bin", "notes (2).txt"} {
		if !strings.Contains(files, want) {
			t.Errorf("pdf.js lists no attachment %q: %v", want, res.Files)
		}
	}
	if dst := os.Getenv("SEALPOST_SEALED_RENDERS"); dst != "" { // to look at it
		_ = os.WriteFile(filepath.Join(dst, "chromium-pdfjs.png"), pngData, 0o644)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
