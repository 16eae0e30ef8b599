package rules

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules/hours"
)

// newHoldingPolicy is a policy whose account "therapist" holds mail to
// clients outside mon-fri 09:00-17:00 in New York.
func newHoldingPolicy(t *testing.T, hold bool) *testPolicy {
	t.Helper()
	tp := newTestPolicy(t)
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := hours.ParseWindows("mon-fri 09:00-17:00")
	if err != nil {
		t.Fatal(err)
	}
	tp.SetHours(map[string]OfficeHours{"therapist": {Schedule: &hours.Schedule{Location: loc, Windows: ws}, Hold: hold}})
	tp.consent(t, "client@client.example", "2026-01-10", "")
	tp.keys.keys["key@client.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "AAAA"}
	return tp
}

func holdMessage(subject string) string {
	return "From: therapist@practice.example\r\nTo: client@client.example, key@client.example\r\nCc: colleague@practice.example\r\n" +
		"Subject: " + subject + "\r\nMessage-ID: <1@practice.example>\r\n\r\nSee you Monday.\r\n"
}

// prepareAt submits holdMessage(subject) at the New York time at to the
// client, a key holder, a colleague and those in extra.
func prepareAt(t *testing.T, tp *testPolicy, at time.Time, subject string) (*Result, *memSink) {
	t.Helper()
	ctx := context.Background()
	tp.now = at
	var ds []record.Decision
	for _, r := range []string{"client@client.example", "key@client.example", "colleague@practice.example"} {
		d, err := tp.Decide(ctx, "therapist", r)
		if err != nil || d.Protection == record.Refused {
			t.Fatalf("%s: %v %v", r, d.Protection, err)
		}
		ds = append(ds, d)
	}
	sink := &memSink{}
	res, err := tp.Apply(ctx, Submission{ID: "1", Account: "therapist", Sender: "therapist@practice.example", Decisions: ds}, strings.NewReader(holdMessage(subject)), sink)
	if err != nil {
		t.Fatal(err)
	}
	return res, sink
}

// copiesOf describes the copies: name, recipients, and the hold, if any.
func copiesOf(res *Result) string {
	var out []string
	for _, c := range res.Copies {
		s := c.Name + " " + strings.Join(c.Recipients, ",") + " " + string(c.Protection)
		if !c.HoldUntil.IsZero() {
			s += " held until " + c.HoldUntil.UTC().Format(time.RFC3339)
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

func TestHoldOutsideHours(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	friday := time.Date(2026, 12, 4, 19, 30, 0, 0, ny)
	tests := []struct {
		name    string
		hold    bool
		at      time.Time
		subject string
		copies  string
		held    string
		sentNow string
	}{
		{name: "Friday evening: clients' copies held until Monday, the colleague's goes", hold: true, at: friday, subject: "Monday",
			copies: "sent colleague@practice.example internal; sent client@client.example consented held until 2026-12-07T14:00:00Z; enc-1 key@client.example encrypted held until 2026-12-07T14:00:00Z",
			held:   "Mon 7 Dec 09:00 (office hours)"},
		{name: "a second before opening: held for that second", hold: true, at: time.Date(2026, 12, 7, 8, 59, 59, 0, ny), subject: "x",
			copies: "sent colleague@practice.example internal; sent client@client.example consented held until 2026-12-07T14:00:00Z; enc-1 key@client.example encrypted held until 2026-12-07T14:00:00Z",
			held:   "Mon 7 Dec 09:00 (office hours)"},
		{name: "as the window opens: nothing held", hold: true, at: time.Date(2026, 12, 7, 9, 0, 0, 0, ny), subject: "x",
			copies: "sent client@client.example,colleague@practice.example consented; enc-1 key@client.example encrypted"},
		{name: "across spring forward: Monday 09:00 is EDT", hold: true, at: time.Date(2026, 3, 7, 12, 0, 0, 0, ny), subject: "x",
			copies: "sent colleague@practice.example internal; sent client@client.example consented held until 2026-03-09T13:00:00Z; enc-1 key@client.example encrypted held until 2026-03-09T13:00:00Z",
			held:   "Mon 9 Mar 09:00 (office hours)"},
		{name: "across fall back: Monday 09:00 is EST", hold: true, at: time.Date(2026, 10, 31, 12, 0, 0, 0, ny), subject: "x",
			copies: "sent colleague@practice.example internal; sent client@client.example consented held until 2026-11-02T14:00:00Z; enc-1 key@client.example encrypted held until 2026-11-02T14:00:00Z",
			held:   "Mon 2 Nov 09:00 (office hours)"},
		{name: "[now] sends at once and is recorded", hold: true, at: friday, subject: "[NOW] Monday",
			copies:  "sent client@client.example,colleague@practice.example consented; enc-1 key@client.example encrypted",
			sentNow: "client@client.example=marker key@client.example=marker"},
		{name: "an account that does not hold", hold: false, at: friday, subject: "[now] Monday",
			copies: "sent client@client.example,colleague@practice.example consented; enc-1 key@client.example encrypted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp := newHoldingPolicy(t, tc.hold)
			res, sink := prepareAt(t, tp, tc.at, tc.subject)
			if got := copiesOf(res); got != tc.copies {
				t.Errorf("copies:\n%s\nwant\n%s", got, tc.copies)
			}
			if res.Held != tc.held {
				t.Errorf("Held %q, want %q", res.Held, tc.held)
			}
			var sentNow []string
			for _, d := range res.Decisions {
				if d.SentNow != "" {
					sentNow = append(sentNow, d.Address+"="+d.SentNow)
				}
				if held := !d.HeldUntil.IsZero(); held != (tc.held != "" && d.Protection != record.Internal) {
					t.Errorf("%s: held until %v", d.Address, d.HeldUntil)
				}
			}
			if got := strings.Join(sentNow, " "); got != tc.sentNow {
				t.Errorf("sent now: %q, want %q", got, tc.sentNow)
			}
			for name, b := range sink.files {
				marked := strings.Contains(strings.ToLower(b.String()), "[now]")
				if want := !tc.hold && strings.Contains(tc.subject, "[now]"); marked != want {
					t.Errorf("%s: the marker is there: %v, want %v", name, marked, want)
				}
				if !strings.Contains(b.String(), "Subject: Monday\r\n") && strings.Contains(tc.subject, "Monday") && tc.hold {
					t.Errorf("%s: the subject is not what remains after the marker:\n%s", name, b)
				}
			}
		})
	}
}

func TestHoldSparesNoHoldClientsAndAcknowledgements(t *testing.T) {
	tp := newHoldingPolicy(t, true)
	ctx := context.Background()
	if _, err := tp.reg.Add(ctx, record.ConsentEvent{Client: "Chart 18", Addresses: []string{"key@client.example"}, Signed: "2026-01-10",
		Evidence: "treatment plan: contact at any time", RecordedBy: "admin", NoHold: true}); err != nil {
		t.Fatal(err)
	}
	ny, _ := time.LoadLocation("America/New_York")
	res, _ := prepareAt(t, tp, time.Date(2026, 12, 5, 3, 0, 0, 0, ny), "Saturday night")
	want := "sent colleague@practice.example internal; sent client@client.example consented held until 2026-12-07T14:00:00Z; enc-1 key@client.example encrypted"
	if got := copiesOf(res); got != want {
		t.Errorf("copies:\n%s\nwant\n%s", got, want)
	}
	for _, d := range res.Decisions {
		if d.Address == "key@client.example" && d.SentNow != record.SentNowNoHold {
			t.Errorf("the no-hold client's decision says %q", d.SentNow)
		}
	}

	d, err := tp.Decide(ctx, "therapist", "client@client.example")
	if err != nil {
		t.Fatal(err)
	}
	ack, err := tp.Apply(ctx, Submission{ID: "2", Account: "therapist", Sender: "therapist@practice.example", Decisions: []record.Decision{d}, Automatic: true},
		strings.NewReader("From: therapist@practice.example\r\nTo: client@client.example\r\nSubject: [now] received\r\n\r\nThanks.\r\n"), &memSink{})
	if err != nil {
		t.Fatal(err)
	}
	if got := copiesOf(ack); got != "sent client@client.example consented" || ack.Held != "" {
		t.Errorf("an acknowledgement is held: %s %q", got, ack.Held)
	}
}

// An absence in the registry closes the account's hours: mail is held
// until the first day back.
func TestHoldDuringAbsence(t *testing.T) {
	tp := newHoldingPolicy(t, true)
	ctx := context.Background()
	if _, err := tp.reg.AddAbsence(ctx, Absence{Account: "therapist", From: "2026-12-07", Until: "2026-12-09", Note: "conference", RecordedBy: "admin"}); err != nil {
		t.Fatal(err)
	}
	ny, _ := time.LoadLocation("America/New_York")
	res, _ := prepareAt(t, tp, time.Date(2026, 12, 7, 10, 0, 0, 0, ny), "x")
	if res.Held != "Thu 10 Dec 09:00 (away: conference)" {
		t.Errorf("Held %q during an absence until Wednesday", res.Held)
	}
	list, err := tp.reg.Absences(ctx, "therapist")
	if err != nil || len(list) != 1 {
		t.Fatalf("absences %v %v", list, err)
	}
	if err := tp.reg.CancelAbsence(ctx, "therapist", list[0].ID, "admin"); err != nil {
		t.Fatal(err)
	}
	res, _ = prepareAt(t, tp, time.Date(2026, 12, 7, 10, 0, 0, 0, ny), "x")
	if res.Held != "" {
		t.Errorf("held %q after the absence was cancelled", res.Held)
	}
	if _, err := tp.reg.AddAbsence(ctx, Absence{Account: "therapist", From: "2026-12-09", Until: "2026-12-07", RecordedBy: "admin"}); err == nil {
		t.Error("an absence that ends before it begins was recorded")
	}
	if _, err := tp.reg.db.Exec(`DELETE FROM absences`); err == nil {
		t.Error("absences can be deleted")
	}
}

func TestTakeNowMarker(t *testing.T) {
	for subject, want := range map[string]string{
		"[now] Call me":                        "Call me",
		"  [Now]Call me":                       "Call me",
		"=?utf-8?q?[now]_Termin_f=C3=BCr_Mo?=": "=?utf-8?q?Termin_f=C3=BCr_Mo?=",
		"Re: [now] Call me":                    "",
		"[nowhere]":                            "",
	} {
		h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(fmt.Sprintf("Subject: %s\r\n\r\n", subject))))
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if takeNowMarker(&h) {
			got = h.Get("Subject")
		}
		if got != want {
			t.Errorf("%q: %q, want %q", subject, got, want)
		}
	}
}

// The 250 names the closure that holds the copies, and only in words an
// SMTP reply line can carry.
func TestHeldBecauseNamesTheClosure(t *testing.T) {
	day, _ := hours.ParseDate("2026-12-07")
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	tests := []struct{ why, want string }{
		{"away: conference", "away: conference"},
		{"Christmas\r\nDay", "Christmas Day"},
		{"Fête nationale", "closed"},
		{"a\x07bell", "closed"},
		{strings.Repeat("long ", 20), "closed"},
		{"", "closed"},
	}
	for _, tt := range tests {
		s := &hours.Schedule{Location: time.UTC, Closures: []hours.Closures{hours.Days{Location: time.UTC, Ranges: []hours.DayRange{{From: day, Until: day, Why: tt.why}}}}}
		if got := heldBecause(s, at); got != tt.want {
			t.Errorf("closure %q: held because %q, want %q", tt.why, got, tt.want)
		}
		if got := heldBecause(s, at.AddDate(0, 0, 1)); got != "office hours" {
			t.Errorf("the day after %q: held because %q", tt.why, got)
		}
	}
}
