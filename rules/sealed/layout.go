package sealed

import (
	"io"
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
// Each page is compressed as soon as it is full, and the buffer it was
// drawn in is drawn in again: a long text costs its pages compressed.
type layout struct {
	f     *pageFont
	pages [][]byte // compressed (FlateDecode)
	cur   []byte   // the page being drawn
	drawn bool     // cur holds a page, maybe still blank
	y     float64
	used  []bool // the glyphs drawn, for the font's widths array
	gbuf  []uint16
	wrap  wrapper
	piece int  // the most text cleaned and wrapped at a time (pieceBytes)
	full  bool // maxPages is reached: the rest of the text is left out
	err   error
}

func newLayout(f *pageFont) *layout {
	l := &layout{f: f, used: make([]bool, len(f.adv)), cur: make([]byte, 0, 16<<10), piece: pieceBytes}
	l.newPage()
	return l
}

func (l *layout) newPage() {
	if l.drawn {
		l.endPage()
	}
	l.drawn = true
	l.y = pageH - marginTop
}

// endPage compresses the page drawn in cur.
func (l *layout) endPage() {
	z, err := deflate(func(w io.Writer) error {
		_, err := w.Write(l.cur)
		return err
	})
	if err != nil && l.err == nil {
		l.err = err
	}
	l.pages = append(l.pages, z)
	l.cur = l.cur[:0]
	l.drawn = false
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
	labelGlyphs := l.f.glyphs(label, nil)
	l.lines(value, headSize, textW-labelW, func(ln []uint16) bool {
		if !l.room(headLead) {
			return false
		}
		if labelGlyphs != nil {
			l.text(headSize, marginX, l.y-headSize, labelGlyphs, 0, true)
			labelGlyphs = nil
		}
		l.text(headSize, marginX+labelW, l.y-headSize, ln, 0, false)
		l.y -= headLead
		return true
	})
}

// paragraphs draws text wrapped to the page's width until the pages are
// full. The text is as it came (line ends CRLF, LF or CR; not cleaned):
// it is cleaned and wrapped a piece at a time, and what does not fit on
// the pages is never looked at.
func (l *layout) paragraphs(text string, size, lead, gray float64) {
	l.lines(text, size, textW, func(ln []uint16) bool {
		if !l.room(lead) {
			return false
		}
		l.text(size, marginX, l.y-size, ln, gray, false)
		l.y -= lead
		return true
	})
}

// lines cleans text and breaks it into lines no wider than maxW points,
// each handed to draw, until draw returns false.
func (l *layout) lines(text string, size, maxW float64, draw func([]uint16) bool) {
	l.wrap.start(l.f, size, maxW)
	for para := range strings.SplitSeq(text, "\n") {
		for line := range strings.SplitSeq(strings.TrimSuffix(para, "\r"), "\r") {
			c := cleaner{f: l.f}
			for rest := line; rest != ""; {
				var piece string
				piece, rest = nextPiece(rest, l.piece)
				l.gbuf = l.f.glyphs(c.clean(piece), l.gbuf[:0])
				if !l.wrap.add(l.gbuf, draw) {
					return
				}
			}
			if !l.wrap.end(draw) {
				return
			}
		}
	}
}

// finish ends the last page and returns the pages, compressed, and each
// page's footer ("Page 2 of 7"), a content stream of its own.
func (l *layout) finish() (pages, footers [][]byte, err error) {
	if l.drawn {
		l.endPage()
	}
	total := strconv.Itoa(len(l.pages))
	footers = make([][]byte, len(l.pages))
	for i := range l.pages {
		g := l.f.glyphs("Page "+strconv.Itoa(i+1)+" of "+total, nil)
		w := l.f.width(g, 8)
		l.cur = nil
		l.text(8, (pageW-w)/2, 30, g, 0.4, false)
		footers[i] = l.cur
	}
	l.cur = nil
	return l.pages, footers, l.err
}

// wrap breaks text (cleaned: every character one the font has) into lines
// of glyph ids no wider than maxW points. Each '\n' ends a line; a word
// wider than a line is broken where it reaches the edge.
func wrap(f *pageFont, size, maxW float64, text string, out [][]uint16) [][]uint16 {
	var w wrapper
	w.start(f, size, maxW)
	keep := func(line []uint16) bool {
		out = append(out, append([]uint16(nil), line...))
		return true
	}
	for para := range strings.SplitSeq(text, "\n") {
		w.add(f.glyphs(para, nil), keep)
		w.end(keep)
	}
	return out
}

// wrapper breaks paragraphs into lines, taking each paragraph's glyphs in
// as many parts as it comes in: a part starts with the spaces before a
// word, or in the middle of a word (nextPiece cuts one only when it is
// longer than a piece, far wider than a line), which goes on being broken
// where it reaches the edge.
type wrapper struct {
	f      *pageFont
	limit  int // in 1/1000 em
	space  uint16
	spaceW int
	line   []uint16
	lineW  int
	inWord bool // the last part ended inside a word
}

func (w *wrapper) start(f *pageFont, size, maxW float64) {
	w.f, w.limit = f, int(maxW*1000/size)
	w.space = f.gid[' ']
	w.spaceW = f.adv[w.space]
	w.line, w.lineW, w.inWord = w.line[:0], 0, false
}

// add takes the next part of a paragraph and hands each line it fills to
// emit (the line is reused once emit returns); false: emit said stop.
func (w *wrapper) add(g []uint16, emit func([]uint16) bool) bool {
	f, limit := w.f, w.limit
	i := 0
	if w.inWord { // the rest of a word longer than a line
		for ; i < len(g) && g[i] != w.space; i++ {
			if !w.glyph(g[i], emit) {
				return false
			}
		}
	}
	if len(g) > 0 {
		w.inWord = g[len(g)-1] != w.space
	}
	for i < len(g) {
		j := i // the spaces before the next word
		for j < len(g) && g[j] == w.space {
			j++
		}
		k := j // the word
		for k < len(g) && g[k] != w.space {
			k++
		}
		sw := (j - i) * w.spaceW
		ww := 0
		for _, x := range g[j:k] {
			ww += f.adv[x]
		}
		switch {
		case w.lineW+sw+ww <= limit:
			w.line = append(w.line, g[i:k]...)
			w.lineW += sw + ww
		case ww <= limit:
			if !emit(w.line) {
				return false
			}
			w.line = append(w.line[:0], g[j:k]...)
			w.lineW = ww
		default: // a word longer than a line
			if w.lineW+sw < limit {
				w.line = append(w.line, g[i:j]...)
				w.lineW += sw
			}
			for _, x := range g[j:k] {
				if !w.glyph(x, emit) {
					return false
				}
			}
		}
		i = k
	}
	return true
}

// glyph adds one glyph of a word longer than a line, starting a new line
// where it reaches the edge.
func (w *wrapper) glyph(x uint16, emit func([]uint16) bool) bool {
	if w.lineW+w.f.adv[x] > w.limit && len(w.line) > 0 {
		if !emit(w.line) {
			return false
		}
		w.line, w.lineW = w.line[:0], 0
	}
	w.line = append(w.line, x)
	w.lineW += w.f.adv[x]
	return true
}

// end ends the paragraph: its last line, maybe empty, goes to emit.
func (w *wrapper) end(emit func([]uint16) bool) bool {
	ok := emit(w.line)
	w.line, w.lineW, w.inWord = w.line[:0], 0, false
	return ok
}
