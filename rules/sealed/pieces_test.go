package sealed

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sealpost/sealpost/internal/testutil"
)

func TestLFWriter(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"CRLF", []string{"a\r\nb\r\n"}, "a\nb\n"},
		{"LF as it is", []string{"a\nb\n\n"}, "a\nb\n\n"},
		{"lone CR", []string{"a\rb\r\rc"}, "a\nb\n\nc"},
		{"CR and LF in two writes", []string{"a\r", "\nb"}, "a\nb"},
		{"CR at the end, then no LF", []string{"a\r", "b\r"}, "a\nb\n"},
		{"CR CR LF", []string{"a\r\r\nb"}, "a\n\nb"},
		{"longer than the buffer", []string{strings.Repeat("line\r\n", 20000)}, strings.Repeat("line\n", 20000)},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		w := newLFWriter(&out)
		for _, s := range tc.writes {
			if err := w.WriteString(s); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != tc.want || got != normaliseLines(strings.Join(tc.writes, "")) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestLayoutInPieces: the pages are the same whether a text is cleaned and
// wrapped in pieces of 16 KB or of 400 bytes, so cutting a long text into
// pieces changes nothing a reader sees.
func TestLayoutInPieces(t *testing.T) {
	f, err := loadFont()
	if err != nil {
		t.Fatal(err)
	}
	para := "Wörter und Καλημέρα σας, Здравствуйте,\tcafe\u0301 and שלום עולם in a paragraph that goes on. "
	tests := map[string]string{
		"prose with CRLF":         strings.Repeat(strings.Repeat(para, 20)+"\r\n\r\n", 30),
		"a run without spaces":    "before " + strings.Repeat("https://example.org/xxxxxxxxxx/", 400) + " after\r\n",
		"letters the font lacks":  "before " + strings.Repeat("你好世界", 2000) + " after " + strings.Repeat("🙂", 500) + "\n",
		"lone CRs and blank ends": "one\rtwo\r\n\r\nthree\r\n   \r\n",
		"decomposed accents":      strings.Repeat("e\u0301", 3000) + " Zoe\u0308",
	}
	for name, text := range tests {
		layOut := func(piece int) ([][]byte, [][]byte, []bool) {
			l := newLayout(f)
			l.piece = piece
			l.paragraphs(text, bodySize, bodyLead, 0)
			pages, footers, err := l.finish()
			if err != nil {
				t.Fatal(err)
			}
			return pages, footers, l.used
		}
		wholePages, wholeFooters, wholeUsed := layOut(pieceBytes)
		pages, footers, used := layOut(400)
		if len(pages) != len(wholePages) || !equalAll(pages, wholePages) || !equalAll(footers, wholeFooters) ||
			!equalBools(used, wholeUsed) {
			t.Errorf("%s: laid out in pieces of 400 bytes, %d pages differ from those in pieces of %d, %d pages",
				name, len(pages), pieceBytes, len(wholePages))
		}
	}
}

func equalAll(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzCleanInPieces: text cleaned in pieces (nextPiece, any size) is the
// text cleaned whole, and lacksGlyphs says what cleanText says. The seed
// corpus is in testdata/fuzz/FuzzCleanInPieces.
func FuzzCleanInPieces(f *testing.F) {
	f.Add("Zoe\u0308 Καλημέρα  שלום\tעולם 你好 e\u0301\u0301 가\u11a8", uint8(3))
	font, err := loadFont()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string, size uint8) {
		s = strings.ToValidUTF8(s, "\uFFFD")
		whole, missing := cleanText(font, s)
		c := cleaner{f: font}
		var joined strings.Builder
		for rest := s; rest != ""; {
			var piece string
			piece, rest = nextPiece(rest, int(size)%40+1)
			if piece == "" || !utf8.ValidString(piece) {
				t.Fatalf("nextPiece cut %q off %q", piece, s)
			}
			joined.WriteString(c.clean(piece))
		}
		if joined.String() != whole || c.missing != missing {
			t.Fatalf("cleaned in pieces: %q, %v; whole: %q, %v", joined.String(), c.missing, whole, missing)
		}
		if lacksGlyphs(font, s) != missing {
			t.Fatalf("lacksGlyphs(%q) = %v, cleanText says %v", s, !missing, missing)
		}
	})
}

// TestSealLargeTextAllocates: sealing a message whose 16 MB are text
// allocates the message, its encrypted copy and little more (the relay
// runs with GOGC=300, so what Seal allocates is what its memory grows by).
func TestSealLargeTextAllocates(t *testing.T) {
	if testing.Short() {
		t.Skip("seals 16 MB")
	}
	if testutil.RaceEnabled {
		t.Skip("counts allocations, which the race detector changes; run without -race")
	}
	var b bytes.Buffer
	b.WriteString("From: Anna <anna@praxis.example>\r\nTo: Zoe <zoe@example.org>\r\nSubject: a long text\r\n\r\n")
	line := "Our next session is on Thursday at 10:00; please bring the forms. Καλημέρα σας.\r\n"
	for b.Len() < 16<<20 {
		b.WriteString(line)
	}
	b.WriteString("\r\n" + testNotice + "\r\n")
	raw := b.Bytes()
	o := testOptions()
	o.MaxBytes = 0
	if _, err := Seal(&countingWriter{w: nopWriter{}}, bytes.NewReader(raw[:1000]), o); err != nil { // the font, the keys
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := Seal(&countingWriter{w: nopWriter{}}, bytes.NewReader(raw), o)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	if bound := 2*uint64(len(raw)) + 8<<20; allocated > bound {
		t.Errorf("sealing %d MB of text allocated %d MB, more than %d MB", len(raw)>>20, allocated>>20, bound>>20)
	}
	if res.PDFSize < int64(len(raw)) {
		t.Errorf("the PDF (%d bytes) cannot hold message.eml (%d bytes)", res.PDFSize, len(raw))
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
