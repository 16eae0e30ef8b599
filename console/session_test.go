package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSessionEnds: a session ends after 30 minutes without a request,
// after 12 hours however busy, at logout (its cookie no longer opens a
// page), and when the login's password hash changes or the login goes; the
// browser then gets the login page, which says why when time ended it.
func TestSessionEnds(t *testing.T) {
	tests := []struct {
		name  string
		act   func(tc *testConsole, b *browser)
		ended bool // the login page says the session ended by time
	}{
		{"idle for 31 minutes", func(tc *testConsole, b *browser) { tc.advance(31 * time.Minute) }, true},
		{"busy for 12 hours", func(tc *testConsole, b *browser) {
			for i := 0; i < 12*3; i++ {
				tc.advance(20 * time.Minute)
				if resp, _ := b.get("/today"); resp.StatusCode != http.StatusOK && i < 12*3-1 {
					b.t.Fatalf("after %v of use: %s", time.Duration(i+1)*20*time.Minute, resp.Status)
				}
			}
			tc.advance(time.Minute)
		}, true},
		{"logged out", func(tc *testConsole, b *browser) {
			if resp, _ := b.post("/logout", nil); resp.StatusCode != http.StatusSeeOther {
				b.t.Fatalf("logout: %s", resp.Status)
			}
		}, false},
		{"password changed", func(tc *testConsole, b *browser) {
			logins := append([]Login(nil), testLogins...)
			logins[1].PasswordHash = strings.Replace(testHash, "$04$", "$05$", 1) // another hash of the same length
			if err := tc.SetLogins(logins); err != nil {
				b.t.Fatal(err)
			}
		}, false},
		{"login removed", func(tc *testConsole, b *browser) { tc.SetLogins(append([]Login{testLogins[0]}, testLogins[2:]...)) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := startConsole(t)
			b := tc.loggedIn(t, "anna")
			cookies := b.c.Jar.Cookies(mustURL(tc.url))
			other := tc.loggedIn(t, "office")
			tt.act(tc, b)
			b.c.Jar.SetCookies(mustURL(tc.url), cookies) // as if the browser kept the cookie
			resp, _ := b.get("/today")
			want := "/login"
			if tt.ended {
				want = "/login?ended=1"
			}
			if resp.StatusCode != http.StatusSeeOther || location(resp) != want {
				t.Fatalf("after the session ended: %s to %q, want %s", resp.Status, location(resp), want)
			}
			if tt.ended {
				if _, body := b.get(want); !strings.Contains(body, "Your session ended") {
					t.Errorf("the login page does not say the session ended:\n%s", body)
				}
			}
			if resp, _ := other.get("/today"); !tt.ended && resp.StatusCode != http.StatusOK {
				t.Errorf("another login's session ended too: %s", resp.Status)
			}
		})
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestLoginThrottle: wrong passwords are answered alike for known and
// unknown names; at the hourly ceiling (100 failures for a name) even the
// right password is refused for that name, while others still log in.
func TestLoginThrottle(t *testing.T) {
	tc := startConsole(t)
	b := tc.browser(t)
	for _, user := range []string{"anna", "nobody"} {
		b.get("/login")
		resp, body := b.post("/login", url.Values{"username": {user}, "password": {"wrong"}})
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "That name and password do not match") {
			t.Errorf("%s with a wrong password: %s", user, resp.Status)
		}
	}
	for i := 0; i < 100; i++ {
		tc.throttle.Fail(tc.clock(), "user:anna")
	}
	b.get("/login")
	resp, body := b.post("/login", url.Values{"username": {"anna"}, "password": {testPassword}})
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed logins") {
		t.Errorf("at the ceiling: %s", resp.Status)
	}
	tc.loggedIn(t, "office")
	tc.advance(61 * time.Minute)
	tc.loggedIn(t, "anna")
	if strings.Contains(tc.logs.String(), testPassword) || strings.Contains(tc.logs.String(), "wrong") {
		t.Error("a password is in the log")
	}
}

// TestTherapistSeesOwnOnly: anna sees her refusal and message, never ben's,
// and changing the reference or the id in the URL shows nothing and
// changes nothing.
func TestTherapistSeesOwnOnly(t *testing.T) {
	tc := startConsole(t)
	anna := tc.loggedIn(t, "anna")
	_, body := anna.get("/refusals")
	if !strings.Contains(body, "R7K2QX") || strings.Contains(body, "M4TJ7C") {
		t.Errorf("anna's refusals list:\n%s", body)
	}
	if resp, _ := anna.get("/refusals/M4TJ7C"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("ben's refusal for anna: %s", resp.Status)
	}
	_, body = anna.get("/queue")
	if !strings.Contains(body, "Q1ANNA") || strings.Contains(body, "Q2BEN") || !strings.Contains(body, "451 4.3.0 mailbox busy") {
		t.Errorf("anna's queue:\n%s", body)
	}
	for _, path := range []string{"/queue/Q2BEN/retry", "/queue/Q2BEN/drop"} {
		if resp, _ := anna.post(path, url.Values{"confirm": {"yes"}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s by anna: %s", path, resp.Status)
		}
	}
	for i := 0; i < 600; i++ {
		tc.queue.list = append(tc.queue.list, QueuedMessage{ID: fmt.Sprintf("QX%03d", i), Account: "ben", Received: time.Now()})
	}
	if _, body := tc.loggedIn(t, "office").get("/queue"); strings.Count(body, `aria-label="Retry `) != 500 || !strings.Contains(body, "The oldest 500 of 602 are listed") {
		t.Errorf("a queue of 602: %d listed", strings.Count(body, `aria-label="Retry `))
	}
	tc.queue.list = tc.queue.list[:2]
	anna.post("/queue/retry-all", nil)
	if strings.Join(tc.queue.retried, " ") != "Q1ANNA" || len(tc.queue.dropped) != 0 {
		t.Errorf("retried %v, dropped %v; anna's retry-all may touch only Q1ANNA", tc.queue.retried, tc.queue.dropped)
	}
	if _, body := tc.loggedIn(t, "office").get("/queue"); !strings.Contains(body, "held for office hours until") {
		t.Errorf("the admin's queue does not say Q2BEN is held:\n%s", body)
	}
	_, body = tc.loggedIn(t, "office").get("/refusals")
	if m := contains(body, "R7K2QX", "M4TJ7C", "anna", "ben"); len(m) > 0 {
		t.Errorf("the admin's list lacks %v", m)
	}
	// A busy week: the newest 500 are listed, and the page says how many
	// are not.
	for i := 0; i < 600; i++ {
		tc.refusals.list = append([]Refusal{{Time: tc.clock().Add(-time.Duration(i+2) * time.Minute), Ref: "AAAAAA", Code: "nothing_on_file", Account: "anna"}}, tc.refusals.list...)
	}
	_, body = tc.loggedIn(t, "office").get("/refusals")
	if n := strings.Count(body, `href="/refusals/`); n != 500 || !strings.Contains(body, "102 older refusals in this time are not listed") || !strings.Contains(body, "M4TJ7C") {
		t.Errorf("%d listed of 602:\n%.500s", n, body)
	}
}

// TestDropAsksFirst: Drop shows what is dropped and drops only once
// confirmed.
func TestDropAsksFirst(t *testing.T) {
	tc := startConsole(t)
	admin := tc.loggedIn(t, "office")
	_, body := admin.get("/queue/Q1ANNA/drop")
	if m := contains(body, "A dropped message is never sent", "Drop it for good", "451 4.3.0 mailbox busy"); len(m) > 0 {
		t.Errorf("the confirmation lacks %v", m)
	}
	if resp, _ := admin.post("/queue/Q1ANNA/drop", nil); location(resp) != "/queue/Q1ANNA/drop" || len(tc.queue.dropped) != 0 {
		t.Errorf("unconfirmed: %s to %s, dropped %v", resp.Status, location(resp), tc.queue.dropped)
	}
	if resp, _ := admin.post("/queue/Q1ANNA/drop", url.Values{"confirm": {"yes"}}); location(resp) != "/queue?done=drop" || len(tc.queue.dropped) != 1 {
		t.Errorf("confirmed: %s to %s, dropped %v", resp.Status, location(resp), tc.queue.dropped)
	}
}

// TestAccessLog: each request is logged with its route's pattern, status
// and login, never its path's values, query, or the addresses a form
// carried.
func TestAccessLog(t *testing.T) {
	tc := startConsole(t)
	admin := tc.loggedIn(t, "office")
	admin.get("/refusals?days=30")
	admin.get("/refusals/R7K2QX")
	admin.post("/refusals/R7K2QX/consent", url.Values{"address": {"dora@client.example"}, "evidence": {"Form 7, cabinet 2"}, "client": {"Dora Q"}})
	logs := tc.logs.String()
	for _, bad := range []string{"dora@client.example", "Dora Q", "Form 7", "days=30", "R7K2QX"} {
		if strings.Contains(logs, bad) {
			t.Errorf("the log holds %q:\n%s", bad, logs)
		}
	}
	if m := contains(logs, `route="GET /refusals/{ref}"`, `route="POST /refusals/{ref}/consent"`, "user=office", "status=303"); len(m) > 0 {
		t.Errorf("the log lacks %v:\n%s", m, logs)
	}
}

// TestLoginChangesInActivity: a reload that adds a login, removes one,
// gives one a new password hash or another role puts each change into the
// activity log (from the configuration, by a reload on the server); a
// reload that changes nothing records nothing.
func TestLoginChangesInActivity(t *testing.T) {
	tc := startConsole(t)
	unchanged := append([]Login(nil), testLogins...)
	if err := tc.SetLogins(unchanged); err != nil {
		t.Fatal(err)
	}
	if n := len(tc.activity.list); n != 0 {
		t.Fatalf("a reload without changes recorded %d changes", n)
	}
	changed := []Login{
		{"office", testHash, Admin},
		{"anna", strings.Replace(testHash, "$04$", "$05$", 1), Therapist},
		{"audit", testHash, Admin},
		{"carla", testHash, Therapist},
	}
	if err := tc.SetLogins(changed); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range tc.activity.list {
		if a.Who != "the configuration file" || a.From != "configuration reload on the server" {
			t.Errorf("activity %+v", a)
		}
		got = append(got, a.What+" "+a.Object)
	}
	want := []string{"login-password-changed anna (therapist)", "login-role-changed audit (admin)", "login-added carla (therapist)", "login-removed ben (therapist)"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("recorded %q\nwant %q", got, want)
	}
}
