package rules

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestLongLinesReencoded: body lines over 998 octets are re-encoded so that
// what goes out follows RFC 5322, and the content the recipient reads is
// unchanged; where re-encoding would break the sender's signature, the
// message is refused instead.
func TestLongLinesReencoded(t *testing.T) {
	long := strings.Repeat("0123456789", 300) // 3000 octets
	head := "From: therapist@practice.example\r\nTo: a@client.example\r\nSubject: long\r\n"
	tests := []struct {
		name     string
		msg      string
		wantCTE  string // the re-encoded part's new transfer encoding
		wantType string
		err      error
	}{
		{"plain text without MIME", head + "\r\n" + long + "\r\nend\r\n", "quoted-printable", "text/plain", nil},
		// The first 64 KiB are examined on their own before the rest of the megabyte.
		{"across the 64 KiB mark", head + "\r\n" + strings.Repeat(strings.Repeat("x", 98)+"\r\n", 650) + long + "\r\nend\r\n", "quoted-printable", "text/plain", nil},
		{"after 120 KB of short lines", head + "\r\n" + strings.Repeat("short line\r\n", 10000) + long + "\r\nend\r\n", "quoted-printable", "text/plain", nil},
		{"text/plain 7bit", head + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" + long + "\r\n", "quoted-printable", "text/plain", nil},
		{"text/html 8bit", head + "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<html><body><p>" + long + "</p></body></html>\r\n", "quoted-printable", "text/html", nil},
		{"an attachment in 8bit", head + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/json\r\nContent-Disposition: attachment; filename=a.json\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + long + "\r\n--b--\r\n", "base64", "application/json", nil},
		{"inside a signed part", head + "MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pgp-signature\"; micalg=pgp-sha256; boundary=s\r\n\r\n--s\r\nContent-Type: text/plain\r\n\r\n" + long + "\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--s--\r\n", "", "", ErrLineTooLong},
	}
	n := newNoticeText(testNotice)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := transformNotice(&lineLimitWriter{w: &out}, strings.NewReader(tt.msg), n)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			raw := out.Bytes()
			if hasLongLine(raw) {
				t.Fatalf("the output still has a line over 998 octets")
			}
			if !bytes.Contains(raw, []byte("Content-Transfer-Encoding: "+tt.wantCTE)) {
				t.Errorf("no part re-encoded as %s:\n%.600s", tt.wantCTE, raw)
			}
			found := false
			for _, l := range goLeaves(t, raw) {
				if l.Type == tt.wantType && (strings.Contains(l.Text, long) || l.Text == "" && l.SHA256 != "") {
					found = true
				}
			}
			if !found {
				t.Errorf("the %s part does not decode to the original line", tt.wantType)
			}
		})
	}
}

// TestLongLineSplitByPeek: a 1,200-octet line with 600 octets on each side
// of the first 64 KiB examined is still found (neither half is too long
// alone) and re-encoded.
func TestLongLineSplitByPeek(t *testing.T) {
	line := strings.Repeat("0123456789", 120)
	msg := "From: therapist@practice.example\r\nTo: a@client.example\r\nSubject: long\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 98)+"\r\n", 649) + strings.Repeat("y", 34) + "\r\n" + line + "\r\nend\r\n"
	var out bytes.Buffer
	if _, err := transformNotice(&lineLimitWriter{w: &out}, strings.NewReader(msg), newNoticeText(testNotice)); err != nil {
		t.Fatal(err)
	}
	raw := out.Bytes()
	if !bytes.Contains(raw, []byte("Content-Transfer-Encoding: quoted-printable")) {
		t.Errorf("the part was not re-encoded as quoted-printable:\n%.600s", raw)
	}
	found := false
	for _, l := range goLeaves(t, raw) {
		found = found || l.Type == "text/plain" && strings.Contains(l.Text, line)
	}
	if !found {
		t.Errorf("the text part does not decode to the original line")
	}
}
