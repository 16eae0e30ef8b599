package rules

import (
	"bufio"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

func TestMayAcknowledge(t *testing.T) {
	practice := func(a string) bool { return strings.HasSuffix(a, "@practice.example") }
	tests := []struct {
		name    string
		headers map[string]string
		from    string
		ok      bool
	}{
		{"a client's message", nil, "anna@client.example", true},
		{"Auto-Submitted: no is a person", map[string]string{"Auto-Submitted": "no"}, "anna@client.example", true},
		{"an auto-reply", map[string]string{"Auto-Submitted": "auto-replied"}, "anna@client.example", false},
		{"auto-generated", map[string]string{"Auto-Submitted": "auto-generated"}, "anna@client.example", false},
		{"bulk", map[string]string{"Precedence": "bulk"}, "anna@client.example", false},
		{"list precedence", map[string]string{"Precedence": "list"}, "anna@client.example", false},
		{"a mailing list", map[string]string{"List-Id": "<news.client.example>"}, "anna@client.example", false},
		{"unsubscribe link", map[string]string{"List-Unsubscribe": "<mailto:x@y>"}, "anna@client.example", false},
		{"Outlook suppression", map[string]string{"X-Auto-Response-Suppress": "OOF, AutoReply"}, "anna@client.example", false},
		{"a bounce", map[string]string{"Return-Path": "<>"}, "anna@client.example", false},
		{"from the practice", nil, "colleague@practice.example", false},
		{"mailer-daemon", nil, "MAILER-DAEMON@client.example", false},
		{"no-reply", nil, "no-reply@client.example", false},
		{"no address", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h textproto.Header
			for k, v := range tt.headers {
				h.Set(k, v)
			}
			if ok, why := mayAcknowledge(h, tt.from, practice); ok != tt.ok {
				t.Errorf("mayAcknowledge = %v (%s), want %v", ok, why, tt.ok)
			}
		})
	}
}

func TestWriteAcknowledgement(t *testing.T) {
	var b strings.Builder
	text := "We answer within two working days.\nIn a crisis call or text 988, or text HOME to 741741.\nUmlaut: Grüße"
	err := writeAcknowledgement(&b, acknowledgement{From: "therapist@practice.example", To: "anna@client.example",
		Subject: "Your message was received", Text: text, InReplyTo: "<m1@client.example>", Date: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	raw := b.String()
	if strings.Contains(strings.ReplaceAll(raw, "\r\n", ""), "\n") {
		t.Fatal("a bare LF in the acknowledgement")
	}
	mr, err := mail.CreateReader(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if v := mr.Header.Get("Auto-Submitted"); v != "auto-replied" {
		t.Errorf("Auto-Submitted = %q", v)
	}
	if v := mr.Header.Get("In-Reply-To"); v != "<m1@client.example>" {
		t.Errorf("In-Reply-To = %q", v)
	}
	p, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	body := new(strings.Builder)
	buf := make([]byte, 4096)
	n, _ := p.Body.Read(buf)
	body.Write(buf[:n])
	for _, want := range []string{"988", "741741", "Grüße"} {
		if !strings.Contains(body.String(), want) {
			t.Errorf("decoded body lacks %q:\n%s", want, body)
		}
	}
}

func TestAcknowledgementLog(t *testing.T) {
	ctx := context.Background()
	r, err := openRegistryAt(t, filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if at, err := r.LastAcknowledgement(ctx, "therapist", "anna@client.example"); err != nil || !at.IsZero() {
		t.Fatalf("never acknowledged: %v %v", at, err)
	}
	first := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	r.RecordAcknowledgement(ctx, "therapist", "Anna@Client.example", first)
	r.RecordAcknowledgement(ctx, "therapist", "anna@client.example", first.Add(48*time.Hour))
	r.RecordAcknowledgement(ctx, "colleague", "anna@client.example", first.Add(96*time.Hour))
	if at, _ := r.LastAcknowledgement(ctx, "therapist", "anna@client.example"); !at.Equal(first.Add(48 * time.Hour)) {
		t.Errorf("last acknowledgement %v", at)
	}
}
