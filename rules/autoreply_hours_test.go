package rules

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/rules/hours"
)

func weekdayHours(t *testing.T, turnaround string) OfficeHours {
	t.Helper()
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := hours.ParseWindows("mon-fri 09:00-17:00")
	if err != nil {
		t.Fatal(err)
	}
	ta, err := hours.ParseTurnaround(turnaround)
	if err != nil {
		t.Fatal(err)
	}
	return OfficeHours{Schedule: &hours.Schedule{Location: loc, Windows: ws}, Turnaround: ta}
}

func TestAcknowledgementText(t *testing.T) {
	oh := weekdayHours(t, "24 business hours")
	ny := oh.Schedule.Location
	crisis := "If you are in crisis, call or text 988."
	tests := []struct {
		name, language, text string
		at                   time.Time
		want                 []string
		not                  []string
	}{
		{name: "the issue's example", at: time.Date(2026, 12, 4, 19, 0, 0, 0, ny), text: "Thank you for writing.",
			want: []string{"Thank you for writing.\n\nYour message arrived on Friday evening; you can expect an answer by Monday 7 December, 17:00.\n\n" + crisis}},
		{name: "Monday morning", at: time.Date(2026, 12, 7, 10, 0, 0, 0, ny), text: "Thanks.",
			want: []string{"arrived on Monday morning; you can expect an answer by Tuesday 8 December, 17:00."}},
		{name: "German", language: "de", at: time.Date(2026, 12, 4, 19, 0, 0, 0, ny), text: "Danke.",
			want: []string{"Ihre Nachricht ist am Freitagabend eingegangen; Sie können bis Montag, 7. Dezember, 17:00 Uhr mit einer Antwort rechnen."}},
		{name: "the crisis lines once when the text has them", at: time.Date(2026, 12, 4, 19, 0, 0, 0, ny), text: "Thanks. " + crisis,
			not: []string{"\n\n" + crisis}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := acknowledgementText(&Autoreply{Text: tc.text, Crisis: crisis, Language: tc.language}, oh, true, tc.at)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("lacks %q:\n%s", w, got)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(got, n) {
					t.Errorf("has %q:\n%s", n, got)
				}
			}
			if strings.Count(got, crisis) != 1 {
				t.Errorf("the crisis lines not once:\n%s", got)
			}
		})
	}
	if got := acknowledgementText(&Autoreply{Text: "Thanks.", Crisis: crisis}, OfficeHours{}, false, time.Now()); got != "Thanks.\n\n"+crisis {
		t.Errorf("without hours: %q", got)
	}
}

// Outside office hours a client hears when to expect an answer even if
// they were acknowledged within the period, but once per closed stretch.
func TestAcknowledgementOncePerClosedStretch(t *testing.T) {
	ctx := context.Background()
	tp := newTestPolicy(t)
	tp.consent(t, "anna@client.example", "2026-01-10", "")
	oh := weekdayHours(t, "24 business hours")
	tp.SetHours(map[string]OfficeHours{"therapist": oh})
	ny := oh.Schedule.Location
	sent := &sentMail{}
	reply := &Autoreply{Every: 7 * 24 * time.Hour, From: "therapist@provider.example", Subject: "Received", Text: "Thanks.", Crisis: "Call 988."}
	m := newTestMailbox(t, tp, &fakeClientKeys{}, AutocryptIgnore, reply, sent, io.Discard)
	var h textproto.Header
	h.Set("Message-Id", "<m@client.example>")
	for _, step := range []struct {
		at   time.Time
		sent int
	}{
		{time.Date(2026, 12, 3, 10, 0, 0, 0, ny), 1}, // Thursday, open: the first
		{time.Date(2026, 12, 3, 15, 0, 0, 0, ny), 1}, // within the period, open: none
		{time.Date(2026, 12, 4, 19, 0, 0, 0, ny), 2}, // Friday evening: closed, a new stretch
		{time.Date(2026, 12, 5, 11, 0, 0, 0, ny), 2}, // Saturday: the same stretch
		{time.Date(2026, 12, 7, 10, 0, 0, 0, ny), 2}, // Monday, open: within the period
		{time.Date(2026, 12, 7, 18, 0, 0, 0, ny), 3}, // Monday evening: another stretch
	} {
		tp.now = step.at
		m.ClientWrote(ctx, h, "anna@client.example")
		if len(sent.msgs) != step.sent {
			t.Fatalf("at %s: %d acknowledgements, want %d", step.at.Format("Mon 15:04"), len(sent.msgs), step.sent)
		}
	}
	if !strings.Contains(strings.ReplaceAll(sent.msgs[1], "=\r\n", ""), "Monday 7 December, 17:00") {
		t.Errorf("Friday evening's acknowledgement:\n%s", sent.msgs[1])
	}
}
