package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
)

// TestConsoleAbsencesOnRegistry: the console's Absences page wired as
// serve wires it: a therapist adds an absence in their office hours' zone
// (far from the server's, so a wrong zone shows), it is in the registry
// under their name, and cancelling it through the confirmation takes it
// out of the list; both changes are in the archive's activity.
func TestConsoleAbsencesOnRegistry(t *testing.T) {
	ctx := context.Background()
	cfg, hash := initPractice(t, "test password")
	cfg.Accounts[0].PasswordHash = string(hash)
	cfg.Hours = config.HoursConfig{Timezone: "Pacific/Kiritimati", Windows: []string{"mon-fri 09:00-17:00"}}
	user := cfg.Accounts[0].Username
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pa, err := openPolicyAndArchive(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pa.close)
	srv, err := newConsole(cfg, nil, pa, func() relayState { return relayState{} }, &benchQueue{}, log)
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	cookie := benchLogin(t, h, user, "test password")
	do := func(method, path string, form url.Values) *httptest.ResponseRecorder {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req := httptest.NewRequest(method, "https://console.test"+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	page := do(http.MethodGet, "/absences", nil)
	token := benchCSRF.FindStringSubmatch(page.Body.String())
	kiritimati, _ := time.LoadLocation("Pacific/Kiritimati")
	today := clockNow().In(kiritimati)
	if page.Code != http.StatusOK || token == nil || !strings.Contains(page.Body.String(), "today there is "+today.Format(time.DateOnly)) {
		t.Fatalf("the page: %d\n%s", page.Code, page.Body)
	}
	from, until := today.Format(time.DateOnly), today.AddDate(0, 0, 2).Format(time.DateOnly)
	if rec := do(http.MethodPost, "/absences", url.Values{"csrf": {token[1]}, "from": {from}, "until": {until}, "note": {"course"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("add: %d\n%s", rec.Code, rec.Body)
	}
	list, err := pa.registry.Absences(ctx, user)
	if err != nil || len(list) != 1 || list[0].From != from || list[0].Until != until || list[0].Note != "course" || list[0].RecordedBy != user+" (console)" {
		t.Fatalf("the registry has %+v, %v", list, err)
	}
	id := strconv.FormatInt(list[0].ID, 10)
	if rec := do(http.MethodGet, "/absences/"+id+"/cancel", nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "course") {
		t.Fatalf("the confirmation: %d\n%s", rec.Code, rec.Body)
	}
	if rec := do(http.MethodPost, "/absences/"+id+"/cancel", url.Values{"csrf": {token[1]}, "confirm": {"yes"}}); rec.Code != http.StatusSeeOther {
		t.Fatalf("cancel: %d\n%s", rec.Code, rec.Body)
	}
	if list, err := pa.registry.Absences(ctx, user); err != nil || len(list) != 0 {
		t.Errorf("after cancelling the registry has %+v, %v", list, err)
	}
	found, err := archive.FindActivity(pa.arch.Dir(), time.Now().Add(-time.Hour))
	var whats []string
	for _, a := range found {
		whats = append(whats, a.What+" "+a.Object)
	}
	want := "absence-added " + id + " (" + user + ", " + from + " to " + until + "),absence-cancelled " + id + " (" + user + ", " + from + " to " + until + ")"
	if err != nil || strings.Join(whats, ",") != want {
		t.Errorf("activity %q, %v; want %q", whats, err, want)
	}
}
