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
)

// contentVerdict sends msg (after From and To) to a consented client under
// the SSN rule and a subject rule, and returns the rule that refused it
// ("" when it passed) and where it fired.
func contentVerdict(t *testing.T, msg string) (string, string, error) {
	t.Helper()
	tp := newTestPolicy(t,
		ContentRule{Name: "diagnosis-subject", Pattern: `(?i)diagnos`, On: "subject", Action: "require_encryption"},
		ContentRule{Name: "us-ssn", Pattern: ssnPattern, On: "any", Action: "refuse"})
	ctx := context.Background()
	tp.consent(t, "consented@client.example", "2026-01-10", "")
	d, _ := tp.Decide(ctx, "therapist", "consented@client.example")
	full := "From: therapist@practice.example\r\nTo: consented@client.example\r\nMIME-Version: 1.0\r\n" + msg
	_, err := tp.Apply(ctx, Submission{ID: "1", Decisions: []Decision{d}}, strings.NewReader(full), &memSink{})
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule, where, err := contentVerdict(t, tt.msg)
			if err != nil {
				t.Fatalf("refused otherwise: %v", err)
			}
			if rule != tt.rule || where != tt.where {
				t.Fatalf("rule %q in the %s, want %q in the %s", rule, where, tt.rule, tt.where)
			}
		})
	}
	// Beyond the depth limit: refused, never passed unread.
	_, _, err := contentVerdict(t, "Subject: s\r\nContent-Type: message/rfc822\r\n\r\n"+tooDeep)
	var ref *Refusal
	if !errors.As(err, &ref) || !strings.Contains(ref.Reason, "more than sealpost can check") {
		t.Fatalf("%d nested messages: %v, want refused as too much to check", maxScannedDepth+2, err)
	}
}

func qp(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	// The writer encodes CRLF as a line end, which is what a mail client writes.
	return b.String()
}
