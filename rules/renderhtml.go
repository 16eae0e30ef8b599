package rules

import (
	"bytes"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// renderHTML is the text a reader sees in an HTML part: tags and comments
// (CDATA sections too, which HTML reads as comments) gone, character
// references decoded, script and style left out (with dropHidden, also the
// elements that inline CSS or the hidden attribute hide), block elements
// and line breaks as new lines, table cells apart, and the alt and title
// texts of elements (shown for blocked images and on hovering). The
// tokenizer reads the source once; what it writes is never longer than
// three times it (a NUL, or a reference to an invalid character, becomes
// U+FFFD).
func renderHTML(src []byte, dropHidden bool) []byte {
	var out bytes.Buffer
	out.Grow(len(src) / 2)
	renderHTMLInto(&out, src, 0, dropHidden)
	return out.Bytes()
}

// reparsedElements: the contents of these elements is raw text to the
// tokenizer, but HTML to a mail program, which runs no scripts and shows no
// frames. It is rendered again, at most maxReparse deep.
var reparsedElements = map[atom.Atom]bool{atom.Noscript: true, atom.Noembed: true, atom.Noframes: true, atom.Iframe: true}

// maxReparse bounds how deep reparsedElements are rendered again.
const maxReparse = 4

// renderHTMLInto is renderHTML of src, reparsed depth deep, written to out.
func renderHTMLInto(out *bytes.Buffer, src []byte, depth int, dropHidden bool) {
	z := html.NewTokenizer(bytes.NewReader(src))
	var raw atom.Atom // the element whose raw text comes next
	var hidden []byte // the element whose contents is hidden
	hiddenDepth := 0  // how many of it are open
	var alts [][]byte // alt and title texts of the current tag
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return
		case html.TextToken:
			text := z.Text()
			switch {
			case hiddenDepth > 0, raw == atom.Script, raw == atom.Style:
			case reparsedElements[raw] && depth < maxReparse:
				renderHTMLInto(out, text, depth+1, dropHidden)
			default:
				out.Write(text)
			}
			raw = 0
		case html.StartTagToken, html.SelfClosingTagToken:
			name, more := z.TagName()
			a := atom.Lookup(name)
			raw = a
			var isHidden bool
			alts, isHidden = readTagAttrs(z, more, alts[:0])
			if hiddenDepth > 0 {
				if tt == html.StartTagToken && bytes.Equal(name, hidden) {
					hiddenDepth++
				}
				continue
			}
			if isHidden && dropHidden {
				if tt == html.StartTagToken && !voidElements[a] {
					hidden, hiddenDepth = append(hidden[:0], name...), 1
				}
				continue
			}
			for _, v := range alts {
				out.WriteByte(' ')
				out.Write(v)
				out.WriteByte(' ')
			}
			breakAfter(out, a)
		case html.EndTagToken:
			name, _ := z.TagName()
			raw = 0
			if hiddenDepth > 0 {
				if bytes.Equal(name, hidden) {
					hiddenDepth--
				}
				continue
			}
			breakAfter(out, atom.Lookup(name))
		default: // comments, CDATA read as comments, doctypes
			raw = 0
		}
	}
}

// readTagAttrs reads the attributes of the tag the tokenizer is at (more:
// it has some): the alt and title texts, appended to alts, and whether they
// hide the element.
func readTagAttrs(z *html.Tokenizer, more bool, alts [][]byte) ([][]byte, bool) {
	hidden := false
	for more {
		var k, v []byte
		k, v, more = z.TagAttr()
		switch string(k) {
		case "alt", "title":
			if len(v) > 0 {
				alts = append(alts, v)
			}
		case "hidden":
			hidden = true
		case "style":
			hidden = hidden || hiddenStyle(v)
		}
	}
	return alts, hidden
}

// voidElements have no end tag: hidden, they hide nothing after them.
var voidElements = map[atom.Atom]bool{atom.Area: true, atom.Base: true, atom.Br: true, atom.Col: true, atom.Embed: true,
	atom.Hr: true, atom.Img: true, atom.Input: true, atom.Link: true, atom.Meta: true, atom.Source: true, atom.Track: true, atom.Wbr: true}

// hiddenStyle: inline CSS that hides an element's text from the reader
// (what mail programs honour; style sheets are not followed).
func hiddenStyle(v []byte) bool {
	css := strings.ToLower(strings.Join(strings.Fields(string(v)), ""))
	for _, d := range strings.Split(css, ";") {
		switch d {
		case "display:none", "visibility:hidden", "mso-hide:all", "font-size:0", "font-size:0px", "font-size:0pt",
			"font-size:0em", "font-size:0%", "opacity:0", "max-height:0", "max-height:0px":
			return true
		}
		if strings.HasSuffix(d, "!important") {
			if hiddenStyle([]byte(strings.TrimSuffix(d, "!important"))) {
				return true
			}
		}
	}
	return false
}

// breakAfter writes what a reader sees at the start or end of element a: a
// space between table cells, a new line around blocks.
func breakAfter(out *bytes.Buffer, a atom.Atom) {
	switch a {
	case atom.Td, atom.Th:
		out.WriteByte(' ')
	case atom.Address, atom.Article, atom.Aside, atom.Blockquote, atom.Body, atom.Br, atom.Caption, atom.Center,
		atom.Dd, atom.Details, atom.Dialog, atom.Div, atom.Dl, atom.Dt, atom.Fieldset, atom.Figcaption, atom.Figure,
		atom.Footer, atom.Form, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6, atom.Head, atom.Header,
		atom.Hr, atom.Html, atom.Legend, atom.Li, atom.Main, atom.Nav, atom.Ol, atom.Option, atom.P, atom.Pre,
		atom.Section, atom.Summary, atom.Table, atom.Tbody, atom.Tfoot, atom.Thead, atom.Title, atom.Tr, atom.Ul:
		out.WriteByte('\n')
	}
}
