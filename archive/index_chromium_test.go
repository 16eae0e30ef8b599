package archive

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/sealpost/sealpost/internal/testutil/browsertest"
)

// TestIndexInChromium: the export's index.html in headless Chromium, from
// the folder (file://, no network, no server). At 1280×800 every column of
// every message, Delivery and File included, is inside the window; the
// search box and the filters narrow the list and the order changes it;
// without JavaScript every message is listed and the filters do not show;
// printed, every message is on paper and the controls are not; and axe-core
// finds no WCAG 2.1 A or AA violation, wide or narrow.
func TestIndexInChromium(t *testing.T) {
	out := practiceExport(t, time.FixedZone("CET", 3600))
	ctx := browsertest.Start(t)
	shots := browsertest.ShotDir(t)
	page := "file://" + filepath.Join(out, "index.html")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(page), chromedp.WaitReady("#filter-count")); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(shots, "index-1280x800.png"), png, 0o644)

	// Nothing sticks out to the right: no horizontal scrolling, and every
	// cell (Delivery is the last column) and file link is in the window.
	off := browsertest.Eval[[]string](t, ctx, `(() => {
		const w = document.documentElement.clientWidth, out = [];
		if (document.documentElement.scrollWidth > w) out.push("the page scrolls sideways: " + document.documentElement.scrollWidth + " > " + w);
		document.querySelectorAll("td, th, .meta a, h3").forEach(e => {
			const r = e.getBoundingClientRect();
			if (r.right > w + 0.5 || r.left < -0.5) out.push(e.tagName + " " + e.textContent.slice(0, 40) + " spans " + r.left + ".." + r.right);
		});
		return out;
	})()`)
	if len(off) > 0 {
		t.Errorf("at 1280 px, outside the window:\n%s", strings.Join(off, "\n"))
	}

	visible := func() []string {
		return browsertest.Eval[[]string](t, ctx, `Array.from(document.querySelectorAll("article.msg")).filter(a => a.offsetParent !== null).map(a => a.id)`)
	}
	set := func(id, value string) {
		t.Helper()
		browsertest.Eval[bool](t, ctx, `(() => { const e = document.getElementById(`+browsertest.JSString(id)+`); e.value = `+browsertest.JSString(value)+`;
			e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`)
	}
	if n := len(visible()); n != 9 {
		t.Fatalf("%d messages shown at first, want 9", n)
	}
	for _, tt := range []struct {
		id, value, want string
	}{
		{"filter-text", "dora", "[msg-q1]"},   // named in To, refused: found through the message it was left out of
		{"filter-text", "r7k2qx", "[msg-q1]"}, // the refusal's reference
		{"filter-text", "Check-in 6", "[msg-q15]"},
		{"filter-text", "", ""},
		{"filter-protection", "sealed", "[msg-q1]"},
		{"filter-protection", "", ""},
		{"filter-state", "bounced", "[msg-q1]"},
		{"filter-state", "not-sent", "[msg-q1]"},
		{"filter-state", "", ""},
		{"filter-direction", "inbound", "[msg-i1]"},
		{"filter-direction", "", ""},
	} {
		set(tt.id, tt.value)
		if got := visible(); tt.want != "" && strings.Join(got, " ") != strings.Trim(tt.want, "[]") {
			t.Errorf("%s = %q shows %v, want %s", tt.id, tt.value, got, tt.want)
		} else if tt.want == "" && len(got) != 9 {
			t.Errorf("%s cleared: %d shown, want 9", tt.id, len(got))
		}
	}
	if got := browsertest.Eval[string](t, ctx, `document.getElementById("filter-count").textContent`); got != "All 9 messages shown." {
		t.Errorf("the count says %q", got)
	}
	set("filter-order", "time-desc")
	if got := visible(); got[0] != "msg-q15" || got[len(got)-1] != "msg-q1" {
		t.Errorf("newest first: %v", got)
	}
	// The refusals' table sorts by a column, from the keyboard too.
	browsertest.Eval[bool](t, ctx, `(() => { document.querySelector("#refusals th:nth-child(2) button").click(); return true; })()`)
	if got := browsertest.Eval[string](t, ctx, `document.querySelector("#refusals tbody tr td:nth-child(2)").textContent`); got != "M4TJ7C" {
		t.Errorf("sorted by Ref, the first refusal is %q", got)
	}

	runAxe(t, ctx, "1280 px")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(page), chromedp.WaitReady("#filter-count")); err != nil {
		t.Fatal(err)
	}
	if w := browsertest.Eval[float64](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("at 390 px (a phone) the page is %v px wide", w)
	}
	png, _ = chromedp.Run(ctx, chromedp.CaptureScreenshot())
	os.WriteFile(filepath.Join(shots, "index-390x844.png"), png, 0o644)
	runAxe(t, ctx, "390 px")

	// Printed.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(page), chromedp.WaitReady("#filter-count")); err != nil {
		t.Fatal(err)
	}
	pdf, err := chromedp.Run(ctx, chromedp.PrintToPDF(chromedp.PDFPaper(chromedp.PaperA4)))
	if err != nil {
		t.Fatal(err)
	}
	pdfFile := filepath.Join(shots, "index-print.pdf")
	os.WriteFile(pdfFile, pdf, 0o644)
	if _, err := exec.LookPath("pdftotext"); err == nil {
		text, err := exec.Command("pdftotext", "-layout", pdfFile, "-").Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"Group session on Tuesday", "Weekly check-in 6", "Not sent to this address.", "R7K2QX", "Consent history", "2026-11-30 15:05:09 CET"} {
			if !strings.Contains(string(text), w) {
				t.Errorf("the printed page lacks %q", w)
			}
		}
		for _, w := range []string{"Search", "oldest first", "Skip to the messages"} {
			if strings.Contains(string(text), w) {
				t.Errorf("the printed page shows %q, a control for the screen", w)
			}
		}
	}

	// Without JavaScript: everything listed, no filters that would not work.
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitReady("#message-list")); err != nil {
		t.Fatal(err)
	}
	if n := len(visible()); n != 9 {
		t.Errorf("without JavaScript %d messages are shown, want 9", n)
	}
	if shown := browsertest.Eval[bool](t, ctx, `document.getElementById("filters").offsetParent !== null`); shown {
		t.Errorf("without JavaScript the filters show, and would do nothing")
	}
}

// runAxe fails the test on every WCAG 2.1 A or AA violation axe-core
// names, whatever its impact: the export is a document auditors keep.
func runAxe(t *testing.T, ctx context.Context, where string) {
	t.Helper()
	found, _ := browsertest.Violations(t, ctx, where)
	for _, v := range found {
		t.Errorf("axe-core at %s, %s: %s", where, v.Impact, v.Text)
	}
}
