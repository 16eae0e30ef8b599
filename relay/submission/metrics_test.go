package submission

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestEveryReasonHasASeries: every reason a reply in reply.go counts under
// has a series that exists before the first refusal, so that an alert on
// its rate works from the start.
func TestEveryReasonHasASeries(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "reply.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		if id, isIdent := lit.Type.(*ast.Ident); !isIdent || id.Name != "reply" || len(lit.Elts) != 4 {
			return true
		}
		if s, ok := lit.Elts[3].(*ast.BasicLit); ok && s.Kind == token.STRING {
			if r, _ := strconv.Unquote(s.Value); r != "" {
				reasons[r] = true
			}
		}
		return true
	})
	if len(reasons) < 20 {
		t.Fatalf("found only %d reasons in reply.go: %v", len(reasons), reasons)
	}
	for r := range reasons {
		found := false
		for _, rs := range refusalSeries {
			found = found || slices.Contains(rs, r)
		}
		if !found {
			t.Errorf("reason %q (reply.go) has no series at 0 in refusalSeries (metrics.go)", r)
		}
	}

	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	zero := map[string]bool{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			if m.GetCounter().GetValue() == 0 {
				zero[key] = true
			}
		}
	}
	for _, want := range []string{
		"sealpost_refusals_total reason=recipient_policy stage=rcpt",
		"sealpost_refusals_total reason=storage_full stage=data",
		"sealpost_refusals_total reason=too_many_from_address stage=connect",
		"sealpost_auth_failures_total reason=bad_credentials",
		"sealpost_auth_failures_total reason=throttled",
	} {
		if !zero[want] {
			t.Errorf("no series at 0 before the first refusal: %s", want)
		}
	}
}
