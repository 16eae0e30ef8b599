package rules

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestRecordingReaderTellsTheSize: the sealer gets the plain copy through
// a recordingReader, which says the size of the spool section beneath it,
// so that sealed.Seal reads a message into one buffer of its size (without
// it, a 25 MB message costs 25 MB more while it is sealed).
func TestRecordingReaderTellsTheSize(t *testing.T) {
	tests := []struct {
		name string
		r    io.Reader
		want int64
	}{
		{"a spool section", io.NewSectionReader(strings.NewReader("From: a\r\n\r\nhello\r\n"), 0, 18), 18},
		{"a reader that does not say", &bytes.Buffer{}, 0},
	}
	for _, tc := range tests {
		var src io.Reader = &recordingReader{r: tc.r}
		sized, ok := src.(interface{ Size() int64 })
		if !ok {
			t.Fatalf("%s: the sealer's reader has no Size", tc.name)
		}
		if got := sized.Size(); got != tc.want {
			t.Errorf("%s: the sealer's reader says its size is %d, want %d", tc.name, got, tc.want)
		}
	}
}
