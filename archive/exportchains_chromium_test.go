package archive

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sealpost/sealpost/internal/testutil/browsertest"
)

// TestIndexOfSeveralNodesInChromium: the index.html of two nodes' export
// names each node's chain at the top, lists the messages of both in time
// order, each saying its node (and so do refusals and console changes),
// and axe-core finds no WCAG 2.1 A or AA violation.
func TestIndexOfSeveralNodesInChromium(t *testing.T) {
	a, b, keys := twoNodes(t)
	out := filepath.Join(t.TempDir(), "export")
	if _, err := ExportChains(context.Background(), []Chain{{Dir: a.dir}, {Dir: b.dir}}, keys, out, Filter{}, ExportOptions{Location: time.UTC}); err != nil {
		t.Fatal(err)
	}
	ctx := browsertest.Start(t)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate("file://"+filepath.Join(out, "index.html")), chromedp.WaitReady("#filter-count")); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(browsertest.ShotDir(t), "index-two-nodes.png"), png, 0o644)
	facts := browsertest.Eval[[]string](t, ctx, `Array.from(document.querySelectorAll(".facts dt")).map(e => e.textContent)`)
	if !strings.Contains(strings.Join(facts, "|"), "Node relay-a|Node relay-b") {
		t.Errorf("the export's facts: %q", facts)
	}
	// Without --verify the records exported were checked, not the whole
	// chain: said so, not "did NOT verify".
	if state := browsertest.Eval[string](t, ctx, `Array.from(document.querySelectorAll(".facts div")).find(d => d.querySelector("dt").textContent === "Archive").querySelector("dd").textContent`); !strings.Contains(state, "the records exported and the chain's end checked without problems") {
		t.Errorf("the archive's state on the page: %q", state)
	}
	var nodes []string
	for _, meta := range browsertest.Eval[[]string](t, ctx, `Array.from(document.querySelectorAll("article.msg .meta")).map(e => e.textContent)`) {
		_, node, _ := strings.Cut(meta, "· node ")
		node, _, _ = strings.Cut(node, " ")
		nodes = append(nodes, node)
	}
	if got := strings.Join(nodes, " "); got != "relay-a relay-b relay-a relay-b relay-a relay-b relay-a relay-b" {
		t.Errorf("the messages' nodes, in the page's order: %s", got)
	}
	if acct := browsertest.Eval[string](t, ctx, `document.querySelector("#refusals td[data-label=Account]").textContent`); acct != "therapist (node relay-b)" {
		t.Errorf("the refusal's account: %q", acct)
	}
	if from := browsertest.Eval[string](t, ctx, `document.querySelector("#activity td[data-label=From]").textContent`); from != "(node relay-a)" {
		t.Errorf("the console change's origin: %q", from)
	}
	runAxe(t, ctx, "two nodes' export")
}
