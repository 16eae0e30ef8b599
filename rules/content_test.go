package rules

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime/quotedprintable"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/record"
)

// contentPolicy has the SSN rule and a subject rule, and a consented client.
func contentPolicy(t *testing.T) *testPolicy {
	tp := newTestPolicy(t,
		ContentRule{Name: "diagnosis-subject", Pattern: `(?i)diagnos`, On: "subject", Action: "require_encryption"},
		ContentRule{Name: "us-ssn", Pattern: ssnPattern, On: "any", Action: "refuse"})
	tp.consent(t, "consented@client.example", "2026-01-10", "")
	return tp
}

// contentVerdict sends msg (after From and To) to the consented client and
// returns the rule that refused it ("" when it passed) and where it fired.
func contentVerdict(t *testing.T, tp *testPolicy, msg string) (string, string, error) {
	t.Helper()
	ctx := context.Background()
	d, _ := tp.Decide(ctx, "therapist", "consented@client.example")
	full := "From: therapist@practice.example\r\nTo: consented@client.example\r\nMIME-Version: 1.0\r\n" + msg
	_, err := tp.Apply(ctx, Submission{ID: "1", Decisions: []record.Decision{d}}, strings.NewReader(full), &memSink{})
	var ref *Refusal
	if errors.As(err, &ref) && len(ref.Fired) == 1 {
		return ref.Fired[0].Rule, ref.Fired[0].Where, nil
	}
	return "", "", err
}

func forwarded(inner string) string {
	return "Subject: Fwd: notes\r\nContent-Type: multipart/mixed; boundary=fw\r\n\r\n--fw\r\nContent-Type: text/plain\r\n\r\nSee the message below.\r\n" +
		"--fw\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"notes.eml\"\r\n\r\n" + inner + "\r\n--fw--\r\n"
}

const innerClean = "From: colleague@practice.example\r\nTo: therapist@practice.example\r\nSubject: notes\r\n\r\nNothing to see.\r\n"

func innerWith(subject, body string) string {
	return "From: colleague@practice.example\r\nTo: therapist@practice.example\r\nSubject: " + subject + "\r\n\r\n" + body + "\r\n"
}

func b64(s string) string {
	return b64Lines([]byte(s))
}

// TestContentRulesReadForwardedMessages: a message forwarded as an
// attachment (Outlook, Thunderbird) is read like the message itself.
func TestContentRulesReadForwardedMessages(t *testing.T) {
	ssn := "SSN 123-45-6789"
	deep := innerWith("level 0", ssn)
	for i := 1; i <= 3; i++ {
		deep = "From: a@practice.example\r\nSubject: level " + fmt.Sprint(i) + "\r\nContent-Type: message/rfc822\r\n\r\n" + deep
	}
	tooDeep := innerWith("bottom", "hello")
	for i := 0; i < maxScannedDepth+1; i++ {
		tooDeep = "From: a@practice.example\r\nContent-Type: message/rfc822\r\n\r\n" + tooDeep
	}
	tests := []struct {
		name, msg   string
		rule, where string
	}{
		{"text inside message/rfc822", forwarded(innerWith("notes", ssn)), "us-ssn", "body"},
		{"the inner subject", forwarded(innerWith(ssn, "see subject")), "us-ssn", "body"},
		{"an inner subject in encoded words", forwarded(innerWith("=?utf-8?B?"+base64.StdEncoding.EncodeToString([]byte(ssn))+"?=", "x")), "us-ssn", "body"},
		{"the inner From's name", forwarded("From: \"" + ssn + "\" <anna@client.example>\r\nSubject: hi\r\n\r\nhi\r\n"), "us-ssn", "body"},
		{"a diagnosis in the inner subject is not the subject line", forwarded(innerWith("Your diagnosis", "x")), "", ""},
		{"base64-encoded message/rfc822", strings.Replace(forwarded(""), "Content-Disposition: attachment; filename=\"notes.eml\"\r\n\r\n",
			"Content-Transfer-Encoding: base64\r\n\r\n"+b64(innerWith("notes", ssn)), 1), "us-ssn", "body"},
		{"quoted-printable message/rfc822", strings.Replace(forwarded(""), "Content-Disposition: attachment; filename=\"notes.eml\"\r\n\r\n",
			"Content-Transfer-Encoding: quoted-printable\r\n\r\n"+qp(innerWith("notes", "Grüße, "+ssn)), 1), "us-ssn", "body"},
		{"nested twice", forwarded("From: b@practice.example\r\n" + strings.ReplaceAll(forwarded(innerWith("notes", ssn)), "fw", "fw2")), "us-ssn", "body"},
		{"a message alone in message/rfc822, three deep", "Subject: fwd\r\n" + strings.SplitN(deep, "\r\n", 2)[1], "us-ssn", "body"},
		{"an inner multipart with an attachment", forwarded("From: a@practice.example\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\nhi\r\n--in\r\nContent-Type: text/plain; name=n.txt\r\nContent-Disposition: attachment; filename=n.txt\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(ssn) + "--in--\r\n"), "us-ssn", "body"},
		{"inner HTML with character references", forwarded("From: a@practice.example\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n<p>SSN &#49;&#50;&#51;-45-6789</p>\r\n"), "us-ssn", "body"},
		{"message/global", strings.Replace(forwarded(innerWith("notes", ssn)), "message/rfc822", "message/global", 1), "us-ssn", "body"},
		{"a clean forwarded message", forwarded(innerClean), "", ""},
		{"a really encrypted forwarded message", forwarded("From: a@practice.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n" + pgpMIME("", octetPart(encryptedTo(t, ssn)), "")), "", ""},
		{"a fake encrypted forwarded message", forwarded("From: a@practice.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n" + pgpMIME("", octetPart(ssn+"\r\n"), "")), "us-ssn", "body"},
		// Other text the recipient's mail program shows.
		{"an attachment's file name", "Subject: s\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nhi\r\n--m\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"" + ssn + ".pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--m--\r\n", "us-ssn", "body"},
		{"an attachment's name in encoded words", "Subject: s\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nhi\r\n--m\r\nContent-Type: application/pdf; name=\"=?utf-8?Q?SSN_123-45-6789.pdf?=\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--m--\r\n", "us-ssn", "body"},
		{"a part's description", "Subject: s\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nhi\r\n--m\r\nContent-Type: image/png\r\nContent-Description: " + ssn + "\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--m--\r\n", "us-ssn", "body"},
		{"Outlook's Thread-Topic", "Subject: s\r\nThread-Topic: " + ssn + "\r\n\r\nhi\r\n", "us-ssn", "body"},
		{"Keywords", "Subject: s\r\nKeywords: " + ssn + "\r\n\r\nhi\r\n", "us-ssn", "body"},
		// Messages attached as files, and the one inside opaque-signed S/MIME.
		{"a .eml attachment", attachedFile("application/octet-stream; name=\"notes.eml\"", b64(innerWith("notes", ssn))), "us-ssn", "body"},
		{"application/eml", attachedFile("application/eml", b64(innerWith(ssn, "x"))), "us-ssn", "body"},
		{"a .eml attachment that is no message", attachedFile("application/octet-stream; name=\"x.eml\"", b64("just "+ssn+"\n")), "us-ssn", "body"},
		{"opaque-signed S/MIME, base64 inside", smimeBody("signed-data", cmsFixture(t, "signed-b64.p7m")), "us-ssn", "body"},
		{"opaque-signed S/MIME, BER", smimeBody("signed-data", cmsFixture(t, "signed-b64-ber.p7m")), "us-ssn", "body"},
		{"opaque-signed S/MIME, forwarded", forwarded("From: a@practice.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n" + smimeBody("signed-data", cmsFixture(t, "signed-b64.p7m"))), "us-ssn", "body"},
		{"opaque-signed S/MIME without it", smimeBody("signed-data", cmsFixture(t, "signed.p7m")), "", ""},
	}
	tp := contentPolicy(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule, where, err := contentVerdict(t, tp, tt.msg)
			if err != nil {
				t.Fatalf("refused otherwise: %v", err)
			}
			if rule != tt.rule || where != tt.where {
				t.Fatalf("rule %q in the %s, want %q in the %s", rule, where, tt.rule, tt.where)
			}
		})
	}
	// Beyond the depth limit: refused, never passed unread.
	_, _, err := contentVerdict(t, tp, "Subject: s\r\nContent-Type: message/rfc822\r\n\r\n"+tooDeep)
	var ref *Refusal
	if !errors.As(err, &ref) || !strings.Contains(ref.Reason, "more than sealpost can check") {
		t.Fatalf("%d nested messages: %v, want refused as too much to check", maxScannedDepth+2, err)
	}
}

func attachedFile(contentType, base64Body string) string {
	return "Subject: s\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nattached\r\n" +
		"--m\r\nContent-Type: " + contentType + "\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64Body + "--m--\r\n"
}

func qp(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	// The writer encodes CRLF as a line end, which is what a mail client writes.
	return b.String()
}

// TestContentRulesReadWhatReadersSee: the SSN written so that its source
// hides it (character references, tags, comments, Unicode look-alikes,
// invisible characters) is read as a reader reads it.
func TestContentRulesReadWhatReadersSee(t *testing.T) {
	html := func(body string) string {
		return "Subject: s\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<html><body><p>" + body + "</p></body></html>\r\n"
	}
	text := func(body string) string {
		return "Subject: s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body + "\r\n"
	}
	tests := []struct {
		name, msg string
		refused   bool
	}{
		{"decimal references", html("&#49;&#50;&#51;-45-6789"), true},
		{"hex references", html("&#x31;&#x32;&#x33;&#x2D;&#x34;5-6789"), true},
		{"named references", html("123&hyphen;45&dash;6789"), true},
		{"an empty tag inside", html("123-<b></b>45-6789"), true},
		{"spans", html("<span>123</span>-<span style=\"color:red\">45</span>-6789"), true},
		{"a comment inside", html("123-<!-- x -->45-6789"), true},
		{"a CDATA section inside", html("123-<![CDATA[ x ]]>45-6789"), true},
		{"&nbsp; separators", html("123&nbsp;45&nbsp;6789"), true},
		{"&#160; separators", html("123&#160;45&#160;6789"), true},
		{"a script inside", html("123-<script>var x = 1;</script>45-6789"), true},
		{"a style inside", html("123-<style>p { color: red }</style>45-6789"), true},
		{"in a style sheet, which the provider reads", html("<style>/* 123-45-6789 */</style>hello"), true},
		{"noscript, shown by mail programs", html("<noscript>123-<b></b>45-6789</noscript>"), true},
		{"an image's alt text", html("<img src=\"cid:x\" alt=\"SSN 123&#45;45-6789\">"), true},
		{"a soft hyphen reference", html("123-4&shy;5-6789"), true},
		{"a zero-width space reference", html("123-&#8203;45-6789"), true},
		{"fullwidth digits in HTML", html("&#65297;&#65298;&#65299;-45-6789"), true},
		{"UTF-16 HTML with references", "Subject: s\r\nContent-Type: text/html; charset=utf-16le\r\nContent-Transfer-Encoding: base64\r\n\r\n" + utf16Base64("<p>&#49;23-45-6789</p>") + "\r\n", true},
		{"fullwidth digits", text("１２３-４５-６７８９"), true},
		{"fullwidth hyphen-minus", text("123－45－6789"), true},
		{"mathematical digits", text("𝟏𝟐𝟑-𝟒𝟓-𝟔𝟕𝟖𝟗"), true},
		{"Arabic-Indic digits", text("١٢٣-٤٥-٦٧٨٩"), true},
		{"minus sign U+2212", text("123\u221245\u22126789"), true},
		{"small hyphen-minus U+FE63", text("123\ufe6345\ufe636789"), true},
		{"no-break space", text("123\u00a045\u00a06789"), true},
		{"narrow no-break space", text("123\u202f45\u202f6789"), true},
		{"ideographic space", text("123\u300045\u30006789"), true},
		{"thin space", text("123\u200945\u20096789"), true},
		{"zero-width space", text("123-4\u200b5-6789"), true},
		{"zero-width joiner", text("12\u200d3-45-6789"), true},
		{"word joiner", text("123-45-67\u206089"), true},
		{"byte order mark", text("123-45\ufeff-6789"), true},
		{"soft hyphen", text("123-45-67\u00ad89"), true},
		{"direction marks", text("123-4\u200e5-6789\u200f"), true},
		{"quoted-printable no-break spaces", "Subject: s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n123=C2=A045=C2=A06789\r\n", true},
		{"a fullwidth subject", "Subject: =?utf-8?B?" + base64.StdEncoding.EncodeToString([]byte("SSN １２３-４５-６７８９")) + "?=\r\n\r\nhi\r\n", true},
		{"a subject with a zero-width space", "Subject: =?utf-8?Q?SSN_123-45=E2=80=8B-6789?=\r\n\r\nhi\r\n", true},
		{"a hidden span between the digits", html("123-<span style=\"display: none\">0</span>45-6789"), true},
		{"Outlook's mso-hide", html("123-<span style=\"mso-hide:all\">9</span>45-6789"), true},
		{"text in zero size", html("123-<font style=\"font-size:0px\">77</font>45-6789"), true},
		{"the hidden attribute", html("123<b hidden>0</b>-45-6789"), true},
		{"a hidden element left open before visible text", html("<span style=\"display:none\">x</p><p>123-<b></b>45-6789"), true},
		{"a combining mark on a digit", text("123\u0332-45-6789"), true},
		{"Windows-1252 no-break spaces, undeclared", "Subject: s\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSSN 123\xa045\xa06789\r\n", true},
		{"Windows-1252 en dashes, declared", "Subject: s\r\nContent-Type: text/plain; charset=windows-1252\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSSN 123\x9645\x966789\r\n", true},
		// What a reader does not read as one number is not one.
		{"numbers in two paragraphs", html("123</p><p>45-6789"), false},
		{"a phone number in fullwidth", text("５５５-１２３-４５６７"), false},
		{"a date with dashes", text("2026\u201311\u201322"), false},
		{"plain prose in HTML", html("See you on Tuesday at 10&nbsp;am."), false},
	}
	tp := contentPolicy(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule, _, err := contentVerdict(t, tp, tt.msg)
			if err != nil {
				t.Fatalf("refused otherwise: %v", err)
			}
			if (rule == "us-ssn") != tt.refused {
				t.Fatalf("refused by %q; want refused: %v", rule, tt.refused)
			}
		})
	}
	// Each Unicode dash, alone.
	for _, r := range []rune{0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212} {
		if rule, _, err := contentVerdict(t, tp, text("SSN 123"+string(r)+"45"+string(r)+"6789")); rule != "us-ssn" {
			t.Errorf("U+%04X as the dash: not refused (%v)", r, err)
		}
	}
}
