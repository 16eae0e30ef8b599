package ops

import (
	"net/http/httptest"
	"testing"
	"time"
)

// TestReadinessNote: a note shows under /readyz's answer and leaves it 200.
func TestReadinessNote(t *testing.T) {
	note := ""
	r := NewReadiness(&fakeProvider{lastOK: time.Now()}, t.TempDir()).Note(func() string { return note })
	for _, tt := range []struct{ note, want string }{
		{"", "ready\n"},
		{"the off-site copy is 12 minutes behind", "ready\nnote: the off-site copy is 12 minutes behind\n"},
	} {
		note = tt.note
		w := httptest.NewRecorder()
		r.checked = time.Time{}
		r.serveHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		if w.Code != 200 || w.Body.String() != tt.want {
			t.Errorf("note %q: %d %q, want 200 %q", tt.note, w.Code, w.Body.String(), tt.want)
		}
	}
}
