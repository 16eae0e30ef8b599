package console

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func day(n int) string { return time.Now().UTC().AddDate(0, 0, n).Format(time.DateOnly) }

// TestAbsencesTherapist: anna sees her own absences and what they do, not
// ben's whatever the URL asks; adding one she is told in words what is
// wrong (days swapped, in the past, overlapping) and nothing is recorded;
// a good one is recorded with an activity record; she cancels hers through
// the confirmation, and ben's absence is to her as if it did not exist.
func TestAbsencesTherapist(t *testing.T) {
	tc := startConsole(t)
	anna := tc.loggedIn(t, "anna")
	for _, path := range []string{"/absences", "/absences?account=ben"} {
		resp, body := anna.get(path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", path, resp.Status)
		}
		if m := contains(body, "conference", day(1), day(7), "anna (console)", "office hours are closed on those days", `href="/absences/1/cancel"`, `name="csrf"`); len(m) > 0 {
			t.Errorf("%s lacks %v", path, m)
		}
		if strings.Contains(body, day(30)) || strings.Contains(body, `<select`) || strings.Contains(body, "no office hours set") {
			t.Errorf("%s shows ben's absence or the admin's choice", path)
		}
	}

	for _, tt := range []struct{ from, until, says string }{
		{day(5), day(3), "is before the first"},
		{day(-3), day(2), "is in the past"},
		{day(7), day(9), "overlap an absence already recorded, from " + day(1) + " to " + day(7)},
		{"", day(9), "Give the first and the last day away."},
		{"24.12.2026", day(9), "is not a date"},
	} {
		resp, body := anna.post("/absences", url.Values{"from": {tt.from}, "until": {tt.until}, "note": {"x"}})
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tt.says) || !strings.Contains(body, `value="`+tt.until+`"`) {
			t.Errorf("%s to %s: %s, want %q and the form kept:\n%s", tt.from, tt.until, resp.Status, tt.says, body)
		}
	}
	if len(tc.absences.list) != 2 || len(tc.activity.list) != 0 {
		t.Fatalf("a refused absence was recorded: %v, activity %v", tc.absences.list, tc.activity.list)
	}

	resp, _ := anna.post("/absences", url.Values{"from": {day(10)}, "until": {day(12)}, "note": {"holiday"}, "account": {"ben"}})
	if resp.StatusCode != http.StatusSeeOther || location(resp) != "/absences?done=added" {
		t.Fatalf("a good absence: %s to %q", resp.Status, location(resp))
	}
	added := tc.absences.list[2]
	if added.Account != "anna" || added.From != day(10) || added.Until != day(12) || added.Note != "holiday" || added.RecordedBy != "anna (console)" {
		t.Errorf("recorded %+v", added)
	}
	if _, body := anna.get("/absences?done=added"); len(contains(body, "The absence is recorded.", "holiday", day(12))) > 0 {
		t.Errorf("after adding, the page shows:\n%s", body)
	}

	for _, path := range []string{"/absences/2/cancel", "/absences/99/cancel", "/absences/x/cancel"} {
		if resp, body := anna.get(path); resp.StatusCode != http.StatusNotFound || strings.Contains(body, day(30)) {
			t.Errorf("GET %s as anna: %s", path, resp.Status)
		}
		if resp, _ := anna.post(path, url.Values{"confirm": {"yes"}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s as anna: %s", path, resp.Status)
		}
	}
	if resp, _ := anna.post("/absences/1/cancel", nil); resp.StatusCode != http.StatusSeeOther || location(resp) != "/absences/1/cancel" {
		t.Errorf("cancel without confirming: %s to %q", resp.Status, location(resp))
	}
	if len(tc.absences.cancelled) != 0 {
		t.Fatalf("cancelled %v before any confirmation", tc.absences.cancelled)
	}
	resp, body := anna.get("/absences/1/cancel")
	if m := contains(body, "Cancel the absence from "+day(1)+" to "+day(7)+"?", "conference", `value="yes"`, "Keep it"); resp.StatusCode != http.StatusOK || len(m) > 0 {
		t.Errorf("the confirmation: %s, lacks %v", resp.Status, m)
	}
	if resp, _ := anna.post("/absences/1/cancel", url.Values{"confirm": {"yes"}}); resp.StatusCode != http.StatusSeeOther || location(resp) != "/absences?done=cancelled" {
		t.Errorf("cancel: %s to %q", resp.Status, location(resp))
	}
	if !slices.Equal(tc.absences.cancelled, []int64{1}) {
		t.Errorf("cancelled %v", tc.absences.cancelled)
	}
	if _, body := anna.get("/absences?done=cancelled"); strings.Contains(body, "conference") || !strings.Contains(body, "The absence is cancelled") {
		t.Errorf("after cancelling, the page shows:\n%s", body)
	}

	var got []string
	for _, a := range tc.activity.list {
		got = append(got, a.What+" "+a.Object+" by "+a.Who+" "+a.Role)
	}
	want := []string{"absence-added 3 (anna, " + day(10) + " to " + day(12) + ") by anna therapist", "absence-cancelled 1 (anna, " + day(1) + " to " + day(7) + ") by anna therapist"}
	if !slices.Equal(got, want) {
		t.Errorf("activity %q, want %q", got, want)
	}
}

// TestAbsencesAdmin: an admin chooses the therapist, sees and adds theirs
// and cancels any; an unknown account is 404; an auditor gets 403; a form
// without the session's token changes nothing.
func TestAbsencesAdmin(t *testing.T) {
	tc := startConsole(t)
	admin := tc.loggedIn(t, "office")
	resp, body := admin.get("/absences?account=ben")
	if m := contains(body, `<option value="anna">`, `<option value="ben" selected>`, day(30), "ben has no office hours set", `name="account" value="ben"`); resp.StatusCode != http.StatusOK || len(m) > 0 {
		t.Errorf("ben's absences for the admin: %s, lacks %v", resp.Status, m)
	}
	if _, body := admin.get("/absences"); !strings.Contains(body, "conference") {
		t.Errorf("the admin's first choice is not anna:\n%s", body)
	}
	if resp, _ := admin.get("/absences?account=office"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the admin's own login as an account: %s", resp.Status)
	}

	if resp, _ := admin.post("/absences", url.Values{"account": {"ben"}, "from": {day(2)}, "until": {day(2)}, "csrf": {"-"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("without the token: %s", resp.Status)
	}
	if resp, _ := admin.post("/absences", url.Values{"account": {"nobody"}, "from": {day(2)}, "until": {day(2)}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("for an unknown account: %s", resp.Status)
	}
	if len(tc.absences.list) != 2 {
		t.Fatalf("recorded %v", tc.absences.list)
	}
	resp, _ = admin.post("/absences", url.Values{"account": {"ben"}, "from": {day(0)}, "until": {day(0)}})
	if resp.StatusCode != http.StatusSeeOther || location(resp) != "/absences?account=ben&done=added" || tc.absences.list[2].Account != "ben" || tc.absences.list[2].RecordedBy != "office (console)" {
		t.Errorf("adding today for ben: %s to %q, %+v", resp.Status, location(resp), tc.absences.list)
	}
	if resp, _ := admin.post("/absences/2/cancel", url.Values{"confirm": {"yes"}}); resp.StatusCode != http.StatusSeeOther || location(resp) != "/absences?account=ben&done=cancelled" {
		t.Errorf("the admin cancels ben's: %s to %q", resp.Status, location(resp))
	}
	if len(tc.activity.list) != 2 || tc.activity.list[1].What != "absence-cancelled" || tc.activity.list[1].Role != "admin" {
		t.Errorf("activity %+v", tc.activity.list)
	}

	audit := tc.loggedIn(t, "audit")
	if resp, body := audit.get("/absences"); resp.StatusCode != http.StatusForbidden || strings.Contains(body, "conference") {
		t.Errorf("the auditor: %s", resp.Status)
	}
	if _, body := audit.get("/today"); strings.Contains(body, `href="/absences"`) {
		t.Error("the auditor's menu links Absences")
	}
}
