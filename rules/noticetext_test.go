package rules

import (
	"strings"
	"testing"
)

// TestNoticeTextForms: the notice's text forms wrap at 72 characters, the
// flowed form marks its soft breaks and stuffs lines that would read as
// quotes, and the HTML form is ASCII with the marker the transform looks for.
func TestNoticeTextForms(t *testing.T) {
	n := newNoticeText("\r\n" + strings.Repeat("word ", 20) + "\r\n>quoted and Grüße\r\n")
	wantPlain := strings.TrimSpace(strings.Repeat("word ", 14)) + "\r\n" + strings.TrimSpace(strings.Repeat("word ", 6)) + "\r\n>quoted and Grüße"
	if n.plain != wantPlain {
		t.Errorf("plain = %q, want %q", n.plain, wantPlain)
	}
	wantFlowed := strings.Repeat("word ", 14) + "\r\n" + strings.TrimSpace(strings.Repeat("word ", 6)) + "\r\n >quoted and Grüße"
	if n.flowed != wantFlowed {
		t.Errorf("flowed = %q, want %q", n.flowed, wantFlowed)
	}
	if !isASCII(n.html) || !strings.Contains(n.html, htmlNoticeMarker) || !strings.Contains(n.html, "<br>&gt;quoted and Gr&#252;&#223;e</div>") {
		t.Errorf("html = %q", n.html)
	}
	if want := strings.Repeat("word ", 20) + ">quoted and Grüße"; n.norm != want {
		t.Errorf("norm = %q, want %q", n.norm, want)
	}
	for _, params := range []map[string]string{{}, {"format": "fixed"}, {"format": "Flowed"}} {
		want := n.plain
		if params["format"] == "Flowed" {
			want = n.flowed
		}
		if got := n.forTextPart(params); got != want {
			t.Errorf("forTextPart(%v) = %q", params, got)
		}
	}
}
