// Package browsertest drives Debian's Chromium from Go tests (chromedp):
// start a headless browser for a test, evaluate script in a page, run
// axe-core on it, and keep screenshots where a person can look at them.
// It is imported by tests only.
package browsertest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sealpost/sealpost/internal/testutil"
)

// AxeCore is axe-core's script (npm's axe-core, installed by .ci/run), or
// SEALPOST_AXE.
func AxeCore() string {
	if f := os.Getenv("SEALPOST_AXE"); f != "" {
		return f
	}
	return "/opt/axe/node_modules/axe-core/axe.min.js"
}

// Start starts headless Chromium for one test, with extra flags.
func Start(t testing.TB, flags ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	testutil.RequireTools(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath("chromium"), chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("hide-scrollbars", true))
	opts = append(opts, flags...)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser (no timeout on this first call)
		t.Fatal(err)
	}
	return ctx
}

// Eval evaluates script in the page (awaiting a promise) and returns its value.
func Eval[T any](t testing.TB, ctx context.Context, js string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%.200s: %v", js, err)
	}
	return v
}

// JSString is s as a JavaScript string literal.
func JSString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ShotDir is where a test leaves screenshots for a person to look at
// (SEALPOST_SHOTS), or a temporary folder.
func ShotDir(t testing.TB) string {
	if d := os.Getenv("SEALPOST_SHOTS"); d != "" {
		os.MkdirAll(d, 0o755)
		return d
	}
	return t.TempDir()
}

// Screenshot saves the page as it is into dir/name.png.
func Screenshot(t testing.TB, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Violation is one rule axe-core found broken, with how much it matters
// ("minor", "moderate", "serious", "critical").
type Violation struct{ Impact, Text string }

// Violations runs axe-core (WCAG 2.1 A and AA rules) on the page and
// returns what it found. ok is false when axe-core is not installed: the
// test is then failed under SEALPOST_E2E=require, else it is logged.
func Violations(t testing.TB, ctx context.Context, where string) (found []Violation, ok bool) {
	t.Helper()
	src, err := os.ReadFile(AxeCore())
	if err != nil {
		if testutil.Required() {
			t.Fatalf("axe-core: %v (npm install --prefix /opt/axe axe-core, or SEALPOST_AXE)", err)
		}
		t.Logf("axe-core not run: %v", err)
		return nil, false
	}
	// DevTools' evaluation is not bound by the page's Content-Security-Policy.
	Eval[bool](t, ctx, string(src)+";true")
	raw := Eval[json.RawMessage](t, ctx, `axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
		.then(r => ({passes: r.passes.length, violations: r.violations.map(v => ({impact: v.impact, text: v.id + ": " + v.help + " (" + v.nodes.map(n => n.target.join(" ")).slice(0, 3).join(", ") + ")"}))}))`)
	var res struct {
		Passes     int
		Violations []Violation
	}
	if err := json.Unmarshal(raw, &res); err != nil || res.Passes == 0 {
		t.Fatalf("axe-core at %s did not run: %s %v", where, raw, err)
	}
	t.Logf("axe-core at %s: %d rules pass, %d violations", where, res.Passes, len(res.Violations))
	return res.Violations, true
}

// Axe fails the test on every serious or critical violation axe-core
// finds on the page; minor and moderate ones are logged.
func Axe(t testing.TB, ctx context.Context, where string) {
	t.Helper()
	found, _ := Violations(t, ctx, where)
	for _, v := range found {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("axe-core at %s, %s: %s", where, v.Impact, v.Text)
		} else {
			t.Logf("axe-core at %s, %s: %s", where, v.Impact, v.Text)
		}
	}
}

// Text is the page's visible text.
func Text(t testing.TB, ctx context.Context) string {
	t.Helper()
	return strings.TrimSpace(Eval[string](t, ctx, `document.body.innerText`))
}

// Do runs browser steps, failing the test after half a minute rather than
// waiting for ever on an element that never comes.
func Do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Open loads a page and waits for the element ready names.
func Open(t testing.TB, ctx context.Context, url, ready string) {
	t.Helper()
	Do(t, ctx, url, chromedp.Navigate(url), chromedp.WaitReady(ready))
}
