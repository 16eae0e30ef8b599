package sealed

import (
	"bytes"
	"strings"
	"testing"
)

func TestHTMLText(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"link with a label", `<p>Please fill in <a href="https://forms.example.org/intake">the form</a>.</p>`,
			"Please fill in the form (https://forms.example.org/intake)."},
		{"link whose label is its address", `<a href="https://example.org/">example.org</a>`, "example.org"},
		{"mail link", `Write to <a href="mailto:anna@praxis.example?subject=x">Anna</a>`, "Write to Anna (anna@praxis.example)"},
		{"script link left as its label", `<a href="javascript:alert(1)">click</a>`, "click"},
		{"blocks and breaks", "<div>one</div><div>two<br>three</div><p>four</p>five", "one\ntwo\nthree\n\nfour\n\nfive"},
		{"white space collapsed", "<p>a\n   b\t\tc</p>", "a b c"},
		{"pre kept", "<pre>a\n  b</pre>", "a\n  b"},
		{"list", "<ul><li>one</li><li>two</li></ul>", "• one\n• two"},
		{"hidden, script, style and head left out",
			`<html><head><title>T</title><style>p{}</style></head><body><script>x()</script><p hidden>h</p>` +
				`<div style="display: none">gone</div>shown</body></html>`, "shown"},
		{"image by its alt text", `<img src="cid:x" alt="Practice logo">`, "[Practice logo]"},
		{"character references", "caf&eacute; &lt;3 &#x3a9;", "café <3 Ω"},
		{"table cells apart", "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"},
	}
	for _, tc := range tests {
		if got := htmlText([]byte(tc.in)); got != tc.want {
			t.Errorf("%s: htmlText(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestSplitNotice(t *testing.T) {
	notice := "Confidential: this message is meant only for its addressee."
	tests := []struct {
		name, body, rest string
		found            bool
	}{
		{"appended after a blank line", "Hello.\n\n" + notice + "\n", "Hello.", true},
		{"wrapped differently", "Hello.\n\nConfidential: this message\nis meant only  for its addressee.\n", "Hello.", true},
		{"only the notice", notice, "", true},
		{"not at the end", notice + "\n\nHello.", notice + "\n\nHello.", false},
		{"a longer last word", "Hello. Confidential: this message is meant only for its readdressee.",
			"Hello. Confidential: this message is meant only for its readdressee.", false},
		{"glued to the text before", "Hello.Confidential: this message is meant only for its addressee.",
			"Hello.Confidential: this message is meant only for its addressee.", false},
	}
	for _, tc := range tests {
		rest, found := splitNotice(tc.body, notice)
		if rest != tc.rest || found != tc.found {
			t.Errorf("%s: splitNotice = %q, %v; want %q, %v", tc.name, rest, found, tc.rest, tc.found)
		}
	}
}

func TestUnflow(t *testing.T) {
	in := "This is a long \nparagraph. \n> quoted \n> on\n-- \nsig"
	if got, want := unflow(in, false), "This is a long paragraph. > quoted > on\n-- \nsig"; got != want {
		t.Errorf("unflow = %q, want %q", got, want)
	}
	if got, want := unflow("split wo \nrd", true), "split word"; got != want {
		t.Errorf("unflow with DelSp = %q, want %q", got, want)
	}
}

func TestDecodeBase64(t *testing.T) {
	data := randomBytes(10000, 9)
	body := base64Body(data)
	for name, in := range map[string]string{
		"lines of 76":     body,
		"no padding":      strings.TrimRight(strings.TrimSpace(body), "="),
		"spaces and tabs": strings.ReplaceAll(body, "\r\n", " \t\n"),
	} {
		got, err := decodeBase64([]byte(in))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
		if cap(got) < len(got)+padSpare {
			t.Errorf("%s: no room for padding", name)
		}
	}
	for _, bad := range []string{"QUJD*", "QUJD=QUJD", "Q", "QUJDR"} {
		if _, err := decodeBase64([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestCleanText(t *testing.T) {
	f, err := loadFont()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in, want string
		missing  bool
	}{
		{"Zoë Καλημέρα Здравствуйте Dvořák", "Zoë Καλημέρα Здравствуйте Dvořák", false},
		{"Zoe\u0308 decomposed", "Zoë decomposed", false},
		{"a\tb\x00c\u200bd\u200ee", "a    bcde", false},
		{"Hebrew שלום עולם and 你好 🙂", "Hebrew □ □ and □ □", true},
	}
	for _, tc := range tests {
		got, missing := cleanText(f, tc.in)
		if got != tc.want || missing != tc.missing {
			t.Errorf("cleanText(%q) = %q, %v; want %q, %v", tc.in, got, missing, tc.want, tc.missing)
		}
	}
}

func TestWrapKeepsLinesInsideThePage(t *testing.T) {
	f, err := loadFont()
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("Wörter und Καλημέρα und WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW ", 30)
	lines := wrap(f, bodySize, textW, text, nil)
	if len(lines) < 10 {
		t.Fatalf("%d lines", len(lines))
	}
	var glyphs int
	for _, l := range lines {
		if w := f.width(l, bodySize); w > textW+0.01 {
			t.Errorf("a line is %.1f pt wide, the text %.1f", w, textW)
		}
		glyphs += len(l)
	}
	if want := len([]rune(strings.TrimRight(text, " "))); glyphs < want-30 || glyphs > want {
		t.Errorf("%d glyphs laid out of %d characters", glyphs, want)
	}
}

func TestUniqueNames(t *testing.T) {
	files := []file{{name: "message.eml"}, {name: "message.txt"}, {name: "Message.txt"}, {name: "../../etc/passwd"},
		{name: "report.pdf"}, {name: "REPORT.pdf"}, {name: ""}, {name: "a\x00b\nc.doc"}, {name: strings.Repeat("é", 150) + ".pdf"}}
	got := uniqueNames(files)
	want := []string{"message.eml", "message.txt", "Message (2).txt", "_.._etc_passwd", "report.pdf", "REPORT (2).pdf",
		"attachment", "abc.doc"}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("name %d: %q, want %q", i, got[i], w)
		}
	}
	if last := got[len(got)-1]; len(last) > 200 || !strings.HasSuffix(last, ".pdf") {
		t.Errorf("a long name: %q (%d bytes)", last, len(last))
	}
}

func TestAlternativeAndSignedParts(t *testing.T) {
	raw := "Content-Type: multipart/signed; boundary=s; protocol=\"application/pgp-signature\"\r\n\r\n--s\r\n" +
		"Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n" +
		"--a\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 plain\r\n" +
		"--a\r\nContent-Type: multipart/related; boundary=r\r\n\r\n--r\r\nContent-Type: text/html\r\n\r\nrelated\r\n--r\r\n" +
		"Content-Type: image/png; name=logo.png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--r--\r\n--a--\r\n" +
		"--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n"
	m, err := parseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(m.texts, "|") != "café plain" {
		t.Errorf("texts %q, want only the plain version", m.texts)
	}
	if len(m.files) != 1 || m.files[0].name != "logo.png" {
		t.Errorf("files %+v, want the image of the HTML version and no signature", m.files)
	}
}
