package sealed

import (
	"strconv"
	"strings"
)

// The page: A4 with margins of 20 mm (22 at the foot, for the page number).
const (
	pageW, pageH = 595.28, 841.89
	marginX      = 56.69
	marginTop    = 56.69
	marginBottom = 62.0
	textW        = pageW - 2*marginX
)

// maxPages bounds the pages a message's text is laid out on (about 1 MB of
// text); what does not fit is in message.txt, and the last page says so.
const maxPages = 300

// Type sizes and line heights, in points.
const (
	bodySize, bodyLead     = 10.5, 14.5
	headSize, headLead     = 10.0, 14.0
	noticeSize, noticeLead = 8.5, 11.5
	labelW                 = 62.0
)

// layout writes the pages' content streams: lines of glyph ids placed at
// their baselines, with the font's real advance widths for line breaking.
type layout struct {
	f     *pageFont
	pages [][]byte
	cur   []byte
	y     float64
	used  []bool // the glyphs drawn, for the font's widths array
	gbuf  []uint16
	full  bool // maxPages is reached: the rest of the text is left out
}

func newLayout(f *pageFont) *layout {
	l := &layout{f: f, used: make([]bool, len(f.adv))}
	l.newPage()
	return l
}

func (l *layout) newPage() {
	if l.cur != nil {
		l.pages = append(l.pages, l.cur)
	}
	l.cur = make([]byte, 0, 8<<10)
	l.y = pageH - marginTop
}

// room makes space for h points on the page, starting a new one if it must.
// On the last page allowed it keeps two lines free for the note that the
// text goes on in message.txt, and reports false once that is reached.
func (l *layout) room(h float64) bool {
	if l.full {
		return false
	}
	bottom := marginBottom
	if len(l.pages) == maxPages-1 {
		bottom += 2 * bodyLead
	}
	if l.y-h >= bottom {
		return true
	}
	if len(l.pages) < maxPages-1 {
		l.newPage()
		return true
	}
	l.full = true
	for _, line := range wrap(l.f, bodySize, textW, "The text goes on beyond the "+strconv.Itoa(maxPages)+
		" pages this PDF shows: the whole of it is in the attached file message.txt.", nil) {
		l.text(bodySize, marginX, l.y-bodySize, line, 0, true)
		l.y -= bodyLead
	}
	return false
}

func appendNum(b []byte, v float64) []byte {
	return strconv.AppendFloat(b, v, 'f', 2, 64)
}

// text draws glyphs with their baseline at (x, y), in gray (0: black), bold
// drawn as fill and stroke.
func (l *layout) text(size, x, y float64, g []uint16, gray float64, bold bool) {
	for _, v := range g {
		l.used[v] = true
	}
	b := l.cur
	b = append(b, "q "...)
	if bold {
		b = append(b, "0.3 w 2 Tr "...)
	}
	if gray != 0 {
		b = appendNum(b, gray)
		b = append(b, " g "...)
		b = appendNum(b, gray)
		b = append(b, " G "...)
	}
	b = append(b, "BT /F1 "...)
	b = appendNum(b, size)
	b = append(b, " Tf "...)
	b = appendNum(b, x)
	b = append(b, ' ')
	b = appendNum(b, y)
	b = append(b, " Td ("...)
	for _, v := range g {
		b = appendLiteralByte(b, byte(v>>8))
		b = appendLiteralByte(b, byte(v))
	}
	l.cur = append(b, ") Tj ET Q\n"...)
}

// appendLiteralByte appends one byte of a PDF literal string, escaped.
func appendLiteralByte(b []byte, c byte) []byte {
	switch c {
	case '(', ')', '\\':
		return append(b, '\\', c)
	case '\r':
		return append(b, '\\', 'r')
	case '\n':
		return append(b, '\\', 'n')
	}
	return append(b, c)
}

// rule draws a thin line across the text's width.
func (l *layout) rule(y float64) {
	b := append(l.cur, "q 0.6 G 0.5 w "...)
	b = appendNum(b, marginX)
	b = append(b, ' ')
	b = appendNum(b, y)
	b = append(b, " m "...)
	b = appendNum(b, pageW-marginX)
	b = append(b, ' ')
	b = appendNum(b, y)
	l.cur = append(b, " l S Q\n"...)
}

// box draws a pale yellow box with a border.
func (l *layout) box(x, y, w, h float64) {
	b := append(l.cur, "q 1 0.95 0.8 rg 0.8 0.6 0.2 RG 0.8 w "...)
	for _, v := range []float64{x, y, w, h} {
		b = appendNum(b, v)
		b = append(b, ' ')
	}
	l.cur = append(b, "re B Q\n"...)
}

// warning draws text in a box across the page.
func (l *layout) warning(text string) {
	const pad = 6.0
	lines := wrap(l.f, headSize, textW-2*pad, text, nil)
	h := float64(len(lines))*headLead + 2*pad
	l.box(marginX, l.y-h, textW, h)
	y := l.y - pad - headSize
	for _, ln := range lines {
		l.text(headSize, marginX+pad, y, ln, 0, true)
		y -= headLead
	}
	l.y -= h + 12
}

// field draws a header line: a bold label, and its value wrapped beside it.
func (l *layout) field(label, value string) {
	for i, ln := range wrap(l.f, headSize, textW-labelW, value, nil) {
		if !l.room(headLead) {
			return
		}
		if i == 0 {
			l.gbuf = l.f.glyphs(label, l.gbuf[:0])
			l.text(headSize, marginX, l.y-headSize, l.gbuf, 0, true)
		}
		l.text(headSize, marginX+labelW, l.y-headSize, ln, 0, false)
		l.y -= headLead
	}
}

// paragraphs draws text wrapped to the page's width.
func (l *layout) paragraphs(text string, size, lead, gray float64) {
	for _, ln := range wrap(l.f, size, textW, text, nil) {
		if !l.room(lead) {
			return
		}
		l.text(size, marginX, l.y-size, ln, gray, false)
		l.y -= lead
	}
}

// finish ends the last page and numbers them all.
func (l *layout) finish() [][]byte {
	l.pages = append(l.pages, l.cur)
	l.cur = nil
	total := strconv.Itoa(len(l.pages))
	for i := range l.pages {
		g := l.f.glyphs("Page "+strconv.Itoa(i+1)+" of "+total, nil)
		w := l.f.width(g, 8)
		l.cur = l.pages[i]
		l.text(8, (pageW-w)/2, 30, g, 0.4, false)
		l.pages[i] = l.cur
	}
	l.cur = nil
	return l.pages
}

// wrap breaks text (cleaned: every character one the font has) into lines
// of glyph ids no wider than maxW points. Each '\n' ends a line; a word
// wider than a line is broken where it reaches the edge.
func wrap(f *pageFont, size, maxW float64, text string, out [][]uint16) [][]uint16 {
	limit := int(maxW * 1000 / size) // in 1/1000 em
	space := f.gid[' ']
	spaceW := f.adv[space]
	var g []uint16
	for para := range strings.SplitSeq(text, "\n") {
		g = f.glyphs(para, g[:0])
		var line []uint16
		lineW := 0
		for i := 0; i < len(g); {
			j := i // the spaces before the next word
			for j < len(g) && g[j] == space {
				j++
			}
			k := j // the word
			for k < len(g) && g[k] != space {
				k++
			}
			sw := (j - i) * spaceW
			ww := 0
			for _, x := range g[j:k] {
				ww += f.adv[x]
			}
			switch {
			case lineW+sw+ww <= limit:
				line = append(line, g[i:k]...)
				lineW += sw + ww
			case ww <= limit:
				out = append(out, line)
				line = append([]uint16(nil), g[j:k]...)
				lineW = ww
			default: // a word longer than a line
				if lineW+sw < limit {
					line = append(line, g[i:j]...)
					lineW += sw
				}
				for _, x := range g[j:k] {
					if lineW+f.adv[x] > limit && len(line) > 0 {
						out = append(out, line)
						line, lineW = nil, 0
					}
					line = append(line, x)
					lineW += f.adv[x]
				}
			}
			i = k
		}
		out = append(out, line)
	}
	return out
}
