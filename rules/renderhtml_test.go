package rules

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

func TestRenderHTML(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"<p>a</p><p>b</p>", "\na\n\nb\n"},
		{"a<br>b", "a\nb"},
		{"<td>1</td><td>2</td>", " 1  2 "},
		{"x<!-- c -->y", "xy"},
		{"x<![CDATA[c]]>y", "xy"},
		{"<script>alert(1)</script>ok<style>p{}</style>", "ok"},
		{"&lt;b&gt; &amp; &#x41;&#66;&nbsp;", "<b> & AB\u00a0"},
		{"<noscript><b>n</b>&amp;</noscript>", "n&"},
		{"<title>t&amp;</title>", "\nt&\n"},
		{"<img alt='a &amp; b'>", " a & b "},
		{"<textarea><b>raw</b></textarea>", "<b>raw</b>"},
		{"unclosed <b", "unclosed "},
		{"a<span style='DISPLAY: None !important'>x<span>y</span>z</span>b", "ab"},
		{"a<p hidden>x</p>b<img hidden alt=c>", "ab"},
	} {
		if got := string(renderHTML([]byte(tt.in), true)); got != tt.want {
			t.Errorf("renderHTML(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzRenderHTML: rendering and reading never panic, stay bounded, and
// reading what was read changes nothing.
func FuzzRenderHTML(f *testing.F) {
	for _, s := range []string{"<p>a &#49; <b>b</b></p>", "123-<!-- x -->45", "<script>x</script>", "<noscript><noscript>deep</noscript></noscript>",
		"<img alt=\"&#65297;\">", "&#0;\x00<![CDATA[x]]>", "<title>&amp;</title><textarea>&lt;</textarea>", "１２３\u200b\u00ad-\u2212"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := renderHTML(in, true)
		if all := renderHTML(in, false); len(all) > 3*len(in)+3 {
			t.Fatalf("%d octets rendered as %d", len(in), len(all))
		}
		if len(out) > 3*len(in)+3 {
			t.Fatalf("%d octets rendered as %d", len(in), len(out))
		}
		rt, err := readerText(out)
		if err != nil {
			return
		}
		if len(rt) > maxReaderTextGrowth*len(out)+1024 {
			t.Fatalf("read as %d octets from %d", len(rt), len(out))
		}
		if utf8.Valid(out) {
			again, err := readerText(rt)
			if err == nil && !bytes.Equal(again, rt) {
				t.Fatalf("reading %q again gives %q", rt, again)
			}
		}
	})
}
