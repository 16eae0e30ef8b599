package sealed

import (
	"bytes"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlText renders an HTML part as the text a reader sees: tags gone,
// character references decoded, white space collapsed as a browser does
// (but in pre), blocks and line breaks as new lines, list items with a
// bullet, images by their alt text, and links kept as "label (URL)". What a
// mail program does not show (scripts, styles, the head, elements hidden
// by the hidden attribute or inline CSS) is left out.
func htmlText(src []byte) string {
	r := htmlRenderer{z: html.NewTokenizer(bytes.NewReader(src))}
	r.run()
	return strings.TrimSpace(r.out.String())
}

type htmlRenderer struct {
	z         *html.Tokenizer
	out       strings.Builder
	skip      atom.Atom // the element whose contents is left out
	skipName  string
	skipDepth int
	pre       int
	space     bool // a space is owed before the next word
	newlines  int  // how many line ends the output ends with
	links     []openLink
}

// openLink is an <a> whose label is being written.
type openLink struct {
	href  string
	start int // where its label starts in out
}

// skippedElements are never shown by a mail program.
var skippedElements = map[atom.Atom]bool{atom.Script: true, atom.Style: true, atom.Head: true, atom.Title: true,
	atom.Template: true, atom.Noscript: true, atom.Iframe: true, atom.Noembed: true, atom.Noframes: true, atom.Object: true}

// paragraphElements stand apart with a blank line; lineElements start a line.
var (
	paragraphElements = map[atom.Atom]bool{atom.P: true, atom.H1: true, atom.H2: true, atom.H3: true, atom.H4: true,
		atom.H5: true, atom.H6: true, atom.Blockquote: true, atom.Ul: true, atom.Ol: true, atom.Table: true,
		atom.Pre: true, atom.Hr: true, atom.Dl: true, atom.Figure: true}
	lineElements = map[atom.Atom]bool{atom.Br: true, atom.Div: true, atom.Li: true, atom.Tr: true, atom.Dt: true,
		atom.Dd: true, atom.Section: true, atom.Article: true, atom.Header: true, atom.Footer: true, atom.Address: true,
		atom.Center: true, atom.Caption: true, atom.Form: true, atom.Fieldset: true, atom.Main: true, atom.Nav: true}
)

func (r *htmlRenderer) run() {
	for {
		tt := r.z.Next()
		switch tt {
		case html.ErrorToken:
			return
		case html.TextToken:
			if r.skipDepth == 0 {
				r.text(string(r.z.Text()))
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			r.start(tt == html.SelfClosingTagToken)
		case html.EndTagToken:
			r.end()
		}
	}
}

func (r *htmlRenderer) start(selfClosing bool) {
	name, more := r.z.TagName()
	a := atom.Lookup(name)
	var href, alt string
	hidden := false
	for more {
		var k, v []byte
		k, v, more = r.z.TagAttr()
		switch string(k) {
		case "href":
			href = strings.TrimSpace(string(v))
		case "alt":
			alt = strings.TrimSpace(string(v))
		case "hidden":
			hidden = true
		case "style":
			css := strings.ToLower(strings.Join(strings.Fields(string(v)), ""))
			hidden = hidden || strings.Contains(css, "display:none") || strings.Contains(css, "visibility:hidden")
		}
	}
	if r.skipDepth > 0 {
		if string(name) == r.skipName && !selfClosing {
			r.skipDepth++
		}
		return
	}
	if (skippedElements[a] || hidden) && !selfClosing && !voidElement(a) {
		r.skip, r.skipName, r.skipDepth = a, string(name), 1
		return
	}
	switch {
	case a == atom.Br:
		r.newline(1)
	case paragraphElements[a]:
		r.newline(2)
	case lineElements[a]:
		r.newline(1)
	case a == atom.Td || a == atom.Th:
		r.space = true
	}
	switch a {
	case atom.Li:
		r.out.WriteString("• ")
		r.newlines = 0
	case atom.Img:
		if alt != "" {
			r.text("[" + alt + "]")
		}
	case atom.Pre:
		r.pre++
	case atom.A:
		if !selfClosing {
			r.links = append(r.links, openLink{href: href, start: r.out.Len()})
		}
	}
}

func (r *htmlRenderer) end() {
	name, _ := r.z.TagName()
	a := atom.Lookup(name)
	if r.skipDepth > 0 {
		if string(name) == r.skipName {
			r.skipDepth--
		}
		return
	}
	switch {
	case paragraphElements[a]:
		r.newline(2)
	case lineElements[a] && a != atom.Br:
		r.newline(1)
	}
	switch a {
	case atom.Pre:
		r.pre = max(r.pre-1, 0)
	case atom.A:
		if n := len(r.links); n > 0 {
			r.closeLink(r.links[n-1])
			r.links = r.links[:n-1]
		}
	}
}

// closeLink writes a link's target after its label, unless the label says
// it already or the target is no address a reader can use.
func (r *htmlRenderer) closeLink(l openLink) {
	target := l.href
	lower := strings.ToLower(target)
	switch {
	case strings.HasPrefix(lower, "mailto:"):
		target = target[len("mailto:"):]
		if i := strings.IndexByte(target, '?'); i >= 0 {
			target = target[:i]
		}
	case strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"), strings.HasPrefix(lower, "tel:"):
	default:
		return
	}
	label := strings.TrimSpace(r.out.String()[min(l.start, r.out.Len()):])
	bare := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(target, "https://"), "http://"), "/")
	if target == "" || strings.Contains(label, bare) {
		return
	}
	if label == "" {
		r.text(target)
		return
	}
	r.space = true
	r.text("(" + target + ")")
}

// text writes a text token: white space collapsed unless in pre.
func (r *htmlRenderer) text(s string) {
	if r.pre > 0 {
		if s != "" {
			r.flushSpace()
			r.out.WriteString(s)
			r.newlines = len(s) - len(strings.TrimRight(s, "\n"))
		}
		return
	}
	if s == "" {
		return
	}
	if startsWithSpace(s) {
		r.space = true
	}
	for i, w := range strings.Fields(s) {
		if i > 0 {
			r.space = true
		}
		r.flushSpace()
		r.out.WriteString(w)
		r.newlines = 0
	}
	if endsWithSpace(s) {
		r.space = true
	}
}

func (r *htmlRenderer) flushSpace() {
	if r.space && r.newlines == 0 && r.out.Len() > 0 {
		r.out.WriteByte(' ')
	}
	r.space = false
}

// newline ends the line (n: 1) or the paragraph (n: 2), once.
func (r *htmlRenderer) newline(n int) {
	r.space = false
	if r.out.Len() == 0 {
		return
	}
	for r.newlines < n {
		r.out.WriteByte('\n')
		r.newlines++
	}
}

func startsWithSpace(s string) bool { return strings.TrimLeft(s, " \t\r\n\f") != s }
func endsWithSpace(s string) bool   { return strings.TrimRight(s, " \t\r\n\f") != s }

func voidElement(a atom.Atom) bool {
	switch a {
	case atom.Area, atom.Base, atom.Br, atom.Col, atom.Embed, atom.Hr, atom.Img, atom.Input, atom.Link, atom.Meta,
		atom.Source, atom.Track, atom.Wbr:
		return true
	}
	return false
}
