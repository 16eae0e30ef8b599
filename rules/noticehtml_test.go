package rules

import (
	"bytes"
	"strings"
	"testing"
)

// An HTML part larger than what is searched in memory gets the notice at
// its end exactly once: not again when the part carries it already,
// wherever in the part, and the marker is found across write boundaries.
func TestLargeHTMLGetsTheNoticeOnce(t *testing.T) {
	n := newNoticeText(testNotice)
	filler := strings.Repeat("<p>All work and no play makes a dull message.</p>\r\n", maxHTMLInMemory/50+1000)
	marked := `<div ` + htmlNoticeMarker + `="1">earlier notice</div>` + "\r\n"
	tests := []struct {
		name, html string
	}{
		{"no notice yet", "<html><body>" + filler + "</body></html>\r\n"},
		{"notice in the part's first megabytes", "<html><body>" + marked + filler + "</body></html>\r\n"},
		{"notice past what is read into memory", "<html><body>" + filler + marked + "</body></html>\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := "From: a@practice.example\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + tt.html
			var out bytes.Buffer
			if _, err := transformNotice(&out, strings.NewReader(msg), n); err != nil {
				t.Fatal(err)
			}
			if got := bytes.Count(out.Bytes(), []byte(htmlNoticeMarker)); got != 1 {
				t.Errorf("the notice's marker appears %d times in a %d MiB HTML part", got, len(tt.html)>>20)
			}
		})
	}
}

// The marker is seen whichever way the stream is cut.
func TestMarkerWatchAcrossWrites(t *testing.T) {
	text := []byte("xxxxxxxx" + htmlNoticeMarker + "yyyy")
	for cut := 1; cut <= len(text); cut++ {
		m := &markerWatch{marker: []byte(htmlNoticeMarker)}
		for i := 0; i < len(text); i += cut {
			m.Write(text[i:min(i+cut, len(text))])
		}
		if !m.seen {
			t.Errorf("writes of %d bytes: marker not seen", cut)
		}
	}
	m := &markerWatch{marker: []byte(htmlNoticeMarker)}
	m.Write([]byte(htmlNoticeMarker[:5]))
	m.Write([]byte("-" + htmlNoticeMarker[5:]))
	if m.seen {
		t.Error("a marker broken by another byte is seen")
	}
}
