package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/testutil"
)

var (
	clockBuildOnce sync.Once
	clockBuildPath string
	clockBuildErr  error
	clockBuildOut  []byte
)

// SealpostTestClock builds, once per test process, a sealpost whose clock
// the test moves (the sealpost_testclock tag: see cmd/sealpost/clock.go);
// release builds have no such clock.
func SealpostTestClock(t testing.TB) string {
	t.Helper()
	clockBuildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sealpost-e2e-clock-")
		if err != nil {
			clockBuildErr = err
			return
		}
		clockBuildPath = filepath.Join(dir, "sealpost")
		cmd := exec.Command("go", "build", "-tags", "sealpost_testclock", "-o", clockBuildPath, "./cmd/sealpost")
		cmd.Dir = RepoRoot()
		clockBuildOut, clockBuildErr = cmd.CombinedOutput()
	})
	if clockBuildErr != nil {
		t.Fatalf("build sealpost with the test clock: %v\n%s", clockBuildErr, clockBuildOut)
	}
	return clockBuildPath
}

// testClock is the file the test-clock build reads its offset from.
type testClock struct{ path string }

func newTestClock(t testing.TB) *testClock {
	return &testClock{path: filepath.Join(t.TempDir(), "clock")}
}

// set makes sealpost's now the instant at (from now on, running on).
func (c *testClock) set(t testing.TB, at time.Time) {
	t.Helper()
	if err := os.WriteFile(c.path, []byte(time.Until(at).String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (c *testClock) env() []string { return []string{"SEALPOST_TEST_CLOCK=" + c.path} }

const hoursSection = `
[hours]
timezone = "America/New_York"
windows = ["mon-fri 09:00-17:00"]
hold_outside_hours = true
`

// TestHeldMail: a therapist's message on Friday evening to a client and a
// colleague. The colleague has it at once; the client's copy waits, the
// 250 says until when, queue list shows it, a restart keeps it, and it
// reaches the provider within a minute of Monday 09:00 (New York); the
// archive records the hold and the release. "[now]" and a no-hold client
// go at once.
func TestHeldMail(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	clock := newTestClock(t)
	clock.set(t, time.Date(2026, 12, 4, 19, 30, 0, 0, ny))
	p := StartPostfix(t, PostfixOptions{SASL: true})
	r := StartRelay(t, RelayOptions{Upstream: p, Binary: SealpostTestClock(t), Env: clock.env(), Sections: hoursSection,
		Setup: func(r *Relay) {
			r.Run(t, "", "consent", "add", "anna@client.example", "--evidence", "intake form", "--date", "2026-01-02", "--name", "Chart 1")
			if out, _, code := r.Run(t, "", "consent", "add", "ben@client.example", "--evidence", "treatment plan: any time", "--date", "2026-01-02", "--no-hold"); code != 0 || !strings.Contains(out, "never held") {
				t.Fatalf("consent add --no-hold: exit %d\n%s", code, out)
			}
		}})

	out, ok := Swaks(t, r.SwaksArgs("--to", "anna@client.example,colleague@practice.example", "--header", "Subject: Monday's session", "--body", "See you on Monday.")...)
	if !ok || !strings.Contains(out, "250 2.0.0 OK: queued as ") || !strings.Contains(out, "; to clients held until Mon 7 Dec 09:00 (office hours)") {
		t.Fatalf("submission on Friday evening:\n%s", out)
	}
	held := queuedID(t, out)
	testutil.WaitWithin(t, 30*time.Second, "the colleague's copy", func() bool { return len(p.Sink.Messages(t)) == 1 })
	if m := p.Sink.Messages(t)[0]; strings.Join(m.To, ",") != "colleague@practice.example" {
		t.Fatalf("the first copy went to %v", m.To)
	}

	// "[now]" and a client whose plan allows any time: at once.
	if out, ok := Swaks(t, r.SwaksArgs("--to", "anna@client.example", "--header", "Subject: [now] Room change tonight", "--body", "Room 4.")...); !ok || strings.Contains(out, "held until") {
		t.Fatalf("[now]:\n%s", out)
	}
	if out, ok := Swaks(t, r.SwaksArgs("--to", "ben@client.example", "--header", "Subject: Notes", "--body", "As agreed.")...); !ok || strings.Contains(out, "held until") {
		t.Fatalf("a no-hold client:\n%s", out)
	}
	testutil.WaitWithin(t, 30*time.Second, "the copies sent now", func() bool { return len(p.Sink.Messages(t)) == 3 })
	for _, m := range p.Sink.Messages(t)[1:] {
		data := strings.ReplaceAll(m.Data, "\r\n", "\n")
		if strings.Contains(strings.ToLower(data), "[now]") || (m.To[0] == "anna@client.example" && !strings.Contains(data, "Subject: Room change tonight\n")) {
			t.Errorf("the marker reached the client:\n%s", m.Data)
		}
	}

	stdout, _, _ := r.Run(t, "", "queue", "list")
	if !strings.Contains(stdout, held) || !strings.Contains(stdout, "held until") {
		t.Fatalf("queue list does not show the held message:\n%s", stdout)
	}
	r.Stop(t)
	r.Start(t)
	clock.set(t, time.Date(2026, 12, 7, 8, 59, 0, 0, ny))
	// Monday, a minute before opening: still held after the restart.
	if len(p.Sink.Messages(t)) != 3 {
		t.Fatal("the held copy went out before Monday")
	}
	clock.set(t, time.Date(2026, 12, 7, 9, 0, 0, 0, ny))
	opened := time.Now()
	testutil.WaitWithin(t, 60*time.Second, "the held copy after the opening", func() bool { return len(p.Sink.Messages(t)) == 4 })
	t.Logf("released %s after the window opened", time.Since(opened).Round(time.Second))
	if m := p.Sink.Messages(t)[3]; strings.Join(m.To, ",") != "anna@client.example" || !strings.Contains(m.Data, "Subject: Monday's session") {
		t.Errorf("the held copy: to %v\n%s", m.To, m.Data)
	}
	testutil.WaitWithin(t, 30*time.Second, "the queue to drain", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list")
		return strings.Contains(out, "empty")
	})
	r.Stop(t)
	_, m := r.export(t)
	for _, msg := range m.Messages {
		if msg.ID != held {
			continue
		}
		for _, rc := range msg.Recipients {
			var statuses []string
			for _, d := range rc.Delivery {
				statuses = append(statuses, d.Status)
			}
			want := []string{"delivered"}
			if rc.Address == "anna@client.example" {
				want = []string{"held", "released", "delivered"}
			}
			if !slices.Equal(statuses, want) {
				t.Errorf("%s: the record says %v, want %v", rc.Address, statuses, want)
			}
		}
		return
	}
	b, _ := json.Marshal(m)
	t.Errorf("the held message %s is not in the export:\n%s", held, b)
}

// queuedID is the queue id swaks was told.
func queuedID(t *testing.T, swaks string) string {
	t.Helper()
	i := strings.Index(swaks, "queued as ")
	if i < 0 {
		t.Fatalf("no queue id in:\n%s", swaks)
	}
	var id string
	fmt.Sscanf(swaks[i+len("queued as "):], "%s", &id)
	return strings.TrimRight(id, ";")
}

// TestHoursShowAndAway: an admin reads the hours as sealpost computes
// them, records an absence, and the running relay holds mail until the
// therapist is back; the absence cancelled, the hours are as before.
func TestHoursShowAndAway(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	clock := newTestClock(t)
	clock.set(t, time.Date(2026, 12, 4, 19, 30, 0, 0, ny))
	t.Setenv("SEALPOST_TEST_CLOCK", clock.path) // for the commands, as for the relay
	r := StartRelay(t, RelayOptions{Binary: SealpostTestClock(t), Sections: hoursSection + "turnaround = \"24 business hours\"\n",
		Setup: func(r *Relay) {
			r.Run(t, "", "consent", "add", "anna@client.example", "--evidence", "intake form", "--date", "2026-01-02")
		}})
	show := func(want ...string) {
		t.Helper()
		out, errOut, code := r.Run(t, "", "hours", "show")
		for _, w := range want {
			if code != 0 || !strings.Contains(out, w) {
				t.Errorf("hours show (exit %d) lacks %q:\n%s%s", code, w, out, errOut)
			}
		}
	}
	show("therapist: office hours in America/New_York; mail to clients held outside them: yes",
		"Now (Fri 4 Dec 19:30 EST): closed; opens Mon 7 Dec 09:00 EST", "  Mon 7 Dec 09:00-17:00 EST",
		"can expect an answer by Monday 7 December, 17:00 EST (24 business hours)")

	out, _, code := r.Run(t, "", "away", "--account", User, "--from", "2026-12-07", "--until", "2026-12-08", "--note", "conference")
	if code != 0 || !strings.Contains(out, "Recorded absence #1: therapist is away from 2026-12-07 to 2026-12-08") {
		t.Fatalf("away: exit %d\n%s", code, out)
	}
	show("opens Wed 9 Dec 09:00 EST", "Away #1: 2026-12-07 to 2026-12-08 (conference)", "answer by Wednesday 9 December, 17:00 EST")
	out, ok := Swaks(t, r.SwaksArgs("--to", "anna@client.example")...)
	if !ok || !strings.Contains(out, "to clients held until Wed 9 Dec 09:00 (office hours)") {
		t.Fatalf("a message during the absence:\n%s", out)
	}
	// The therapist takes it back before it leaves.
	if out, errOut, code := r.Run(t, "", "queue", "drop", queuedID(t, out)); code != 0 {
		t.Fatalf("queue drop of a held message: exit %d\n%s%s", code, out, errOut)
	}
	testutil.WaitWithin(t, 30*time.Second, "the dropped message gone", func() bool {
		out, _, _ := r.Run(t, "", "queue", "list")
		return strings.Contains(out, "empty")
	})
	if box := r.Outbox(t); len(box) != 0 {
		t.Errorf("a dropped held message was delivered:\n%s", box[0])
	}
	if _, _, code := r.Run(t, "", "away", "--account", User, "--from", "2026-12-09", "--until", "2026-12-01"); code == 0 {
		t.Error("an absence ending before it begins was recorded")
	}
	if out, _, code := r.Run(t, "", "away", "cancel", "1", "--account", User); code != 0 || !strings.Contains(out, "Cancelled absence #1") {
		t.Fatalf("away cancel: exit %d\n%s", code, out)
	}
	if out, _, _ := r.Run(t, "", "away", "list"); !strings.Contains(out, "No absences") {
		t.Errorf("away list after the cancel:\n%s", out)
	}
	show("opens Mon 7 Dec 09:00 EST")
}

// TestAcknowledgementDate: Dovecot plays the provider's IMAP server; a
// client writes on Friday evening and the acknowledgement says by when to
// expect an answer, ends with the crisis lines and goes at once although
// the therapist's mail is held; during Monday's hours a second message
// gets none (within every), on Monday evening a third does (a new closed
// stretch).
func TestAcknowledgementDate(t *testing.T) {
	testutil.RequireTools(t, "dovecot")
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	clock := newTestClock(t)
	clock.set(t, time.Date(2026, 12, 4, 19, 0, 0, 0, ny))
	d := StartDovecot(t, From, "imap-secret")
	r := StartRelay(t, RelayOptions{Binary: SealpostTestClock(t), Env: clock.env(), Sections: d.AccountIMAPSection(t) + fmt.Sprintf(`[account.autoreply]
every = "7d"
text = "Thank you for your message."
crisis = "If you are in crisis, call or text 988."
%s
turnaround = "24 business hours"
`, hoursSection), Setup: func(r *Relay) {
		consentAll(t, r, "anna@client.example")
	}})
	acks := func() []string {
		var out []string
		for _, m := range r.Outbox(t) {
			out = append(out, strings.NewReplacer("=\r\n", "", "=\n", "").Replace(m))
		}
		return out
	}
	write := func(subject string) {
		d.Append(t, "INBOX", inboxMessage("anna@client.example", subject, "", "Hello."))
	}
	write("Friday evening")
	testutil.WaitWithin(t, 30*time.Second, "the acknowledgement", func() bool { return len(acks()) == 1 })
	for _, w := range []string{"Thank you for your message.", "Your message arrived on Friday evening; you can expect an answer by Monday 7 December, 17:00.",
		"If you are in crisis, call or text 988.", "Auto-Submitted: auto-replied"} {
		if !strings.Contains(acks()[0], w) {
			t.Errorf("the acknowledgement lacks %q:\n%s", w, acks()[0])
		}
	}
	archived := func() int { return strings.Count(r.Logs.String(), "archived a client's message") }
	clock.set(t, time.Date(2026, 12, 7, 10, 0, 0, 0, ny))
	write("Monday morning")
	testutil.WaitWithin(t, 30*time.Second, "Monday's message archived", func() bool { return archived() == 2 })
	clock.set(t, time.Date(2026, 12, 7, 18, 0, 0, 0, ny))
	write("Monday evening")
	testutil.WaitWithin(t, 30*time.Second, "the evening's acknowledgement", func() bool { return len(acks()) == 2 })
	if archived() != 3 {
		t.Errorf("%d client messages archived, want 3", archived())
	}
	all := strings.Join(acks(), "\n")
	if !strings.Contains(all, "arrived on Monday evening; you can expect an answer by Tuesday 8 December, 17:00.") ||
		strings.Contains(all, "In-Reply-To: <Monday-morning@client.example>") {
		t.Errorf("the acknowledgements after Friday's:\n%s", all)
	}
}

// TestHeldOverRecurringHoliday: the practice's holidays come from an .ics
// file whose Christmas recurs yearly since 2020: mail on Christmas Eve
// evening is held over Christmas and the weekend.
func TestHeldOverRecurringHoliday(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	clock := newTestClock(t)
	clock.set(t, time.Date(2026, 12, 24, 18, 0, 0, 0, ny))
	t.Setenv("SEALPOST_TEST_CLOCK", clock.path)
	ics := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//e2e//EN\r\nBEGIN:VEVENT\r\nUID:xmas@e2e\r\nDTSTAMP:20200101T000000Z\r\nSUMMARY:Christmas Day\r\n" +
		"DTSTART;VALUE=DATE:20201225\r\nDTEND;VALUE=DATE:20201226\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	r := StartRelay(t, RelayOptions{Binary: SealpostTestClock(t), Sections: hoursSection + "holidays_ical = \"holidays.ics\"\n",
		Setup: func(r *Relay) {
			if err := os.WriteFile(filepath.Join(r.Dir, "holidays.ics"), []byte(ics), 0o644); err != nil {
				t.Fatal(err)
			}
			r.Run(t, "", "consent", "add", "anna@client.example", "--evidence", "intake form", "--date", "2026-01-02")
		}})
	if out, ok := Swaks(t, r.SwaksArgs("--to", "anna@client.example")...); !ok || !strings.Contains(out, "to clients held until Mon 28 Dec 09:00 (office hours)") {
		t.Fatalf("a message on Christmas Eve evening:\n%s", out)
	}
	clock.set(t, time.Date(2026, 12, 25, 12, 0, 0, 0, ny))
	if out, _, _ := r.Run(t, "", "hours", "show"); !strings.Contains(out, "closed (Christmas Day); opens Mon 28 Dec 09:00 EST") {
		t.Errorf("hours show on Christmas Day:\n%s", out)
	}
}
