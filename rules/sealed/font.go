package sealed

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"fmt"
	"sync"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
)

// pageFont is the Go Regular font (BSD-3, the Go authors) as the PDF
// embeds it whole: a Type0 font over a CIDFontType2 with Identity-H
// encoding (two bytes per glyph id) and a ToUnicode map, so that text can
// be selected, searched and extracted. It covers Latin with accents, Greek
// and Cyrillic. Bold is drawn with the same font, filled and stroked, so
// that each PDF carries one font program. Built once; its byte slices are
// shared read-only by every document and have cap == len, so that pdfcpu,
// which pads a stream in place before encrypting it, copies them instead.
type pageFont struct {
	psName                     string
	gid                        [0x10000]uint16 // BMP rune -> glyph id (0: the font lacks it)
	adv                        []int           // advance width per glyph id, 1/1000 em
	ascent, descent, capHeight int
	bbox                       [4]int
	fontFile                   []byte // the TrueType program, zlib-compressed
	length1                    int    // its length uncompressed
	toUnicode                  []byte // the ToUnicode CMap, zlib-compressed
}

var (
	fontOnce sync.Once
	goFont   *pageFont
	fontErr  error
)

// loadFont parses Go Regular once per process.
func loadFont() (*pageFont, error) {
	fontOnce.Do(func() { goFont, fontErr = newPageFont(goregular.TTF, "GoRegular") })
	return goFont, fontErr
}

func newPageFont(ttf []byte, psName string) (*pageFont, error) {
	f, err := sfnt.Parse(ttf)
	if err != nil {
		return nil, fmt.Errorf("sealed: parse the embedded font: %w", err)
	}
	var buf sfnt.Buffer
	upem := int(f.UnitsPerEm())
	ppem := fixed.I(upem)
	to1000 := func(v fixed.Int26_6) int { return (v.Round()*1000 + upem/2) / upem }
	pf := &pageFont{psName: psName, adv: make([]int, f.NumGlyphs())}
	for g := range pf.adv {
		a, err := f.GlyphAdvance(&buf, sfnt.GlyphIndex(g), ppem, font.HintingNone)
		if err != nil {
			return nil, fmt.Errorf("sealed: font advance widths: %w", err)
		}
		pf.adv[g] = to1000(a)
	}
	m, err := f.Metrics(&buf, ppem, font.HintingNone)
	if err != nil {
		return nil, fmt.Errorf("sealed: font metrics: %w", err)
	}
	pf.ascent, pf.descent, pf.capHeight = to1000(m.Ascent), -to1000(m.Descent), to1000(m.CapHeight)
	b, err := f.Bounds(&buf, ppem, font.HintingNone)
	if err != nil {
		return nil, fmt.Errorf("sealed: font bounds: %w", err)
	}
	pf.bbox = [4]int{to1000(b.Min.X), -to1000(b.Max.Y), to1000(b.Max.X), -to1000(b.Min.Y)}

	// The first rune of each glyph is what extraction gives for it.
	seen := make([]bool, len(pf.adv))
	var cmap bytes.Buffer
	cmap.WriteString("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n" +
		"/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n" +
		"/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n" +
		"1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n")
	var pending []string
	flush := func() {
		if len(pending) == 0 {
			return
		}
		fmt.Fprintf(&cmap, "%d beginbfchar\n", len(pending))
		for _, p := range pending {
			cmap.WriteString(p)
		}
		cmap.WriteString("endbfchar\n")
		pending = pending[:0]
	}
	for r := rune(0x20); r < 0x10000; r++ {
		if r >= 0xd800 && r < 0xe000 {
			continue
		}
		g, err := f.GlyphIndex(&buf, r)
		if err != nil || g == 0 {
			continue
		}
		pf.gid[r] = uint16(g)
		if !seen[g] {
			seen[g] = true
			pending = append(pending, fmt.Sprintf("<%04X> <%04X>\n", g, r))
			if len(pending) == 100 { // a bfchar block holds at most 100 entries
				flush()
			}
		}
	}
	flush()
	cmap.WriteString("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n")
	if pf.toUnicode, err = zlibBytes(cmap.Bytes()); err != nil {
		return nil, err
	}
	if pf.fontFile, err = zlibBytes(ttf); err != nil {
		return nil, err
	}
	pf.length1 = len(ttf)
	return pf, nil
}

func zlibBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := zlib.NewWriterLevel(&buf, flate.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	out := buf.Bytes()
	return out[:len(out):len(out)], nil
}

// has reports whether the font can draw r.
func (f *pageFont) has(r rune) bool {
	return r >= 0 && r < 0x10000 && f.gid[r] != 0
}

// glyphs appends the glyph ids of s to dst (0, the missing glyph, for what
// the font lacks: text is cleaned before it gets here).
func (f *pageFont) glyphs(s string, dst []uint16) []uint16 {
	for _, r := range s {
		if r < 0x10000 {
			dst = append(dst, f.gid[r])
		} else {
			dst = append(dst, 0)
		}
	}
	return dst
}

// width of glyphs at size, in points.
func (f *pageFont) width(g []uint16, size float64) float64 {
	w := 0
	for _, x := range g {
		w += f.adv[x]
	}
	return float64(w) * size / 1000
}
