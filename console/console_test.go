package console

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// concrete fills a route's pattern with values the session may use: the
// therapist anna's refusal, queued message and absence.
func concrete(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.NewReplacer("{ref}", "R7K2QX", "{id}", "Q1ANNA", "{fpr}", proposedFpr, "{address}", "c007@client.example", "{absence}", "1", "{$}", "").Replace(path)
	return method, path
}

// TestRoutesRoles walks the route table for every role and for nobody:
// a role the table grants gets the page or the action, every other role
// 403 (nothing done), and without a session the browser goes to the login
// page. The therapist is anna, whose refusal, message and absence the paths
// name.
func TestRoutesRoles(t *testing.T) {
	tc := startConsole(t)
	users := map[Role]string{Admin: "office", Therapist: "anna", Auditor: "audit"}
	for _, rt := range tc.table() {
		for _, role := range []Role{Admin, Therapist, Auditor, ""} {
			t.Run(rt.pattern+"/"+string(role), func(t *testing.T) {
				b := tc.browser(t)
				if role != "" {
					b.login(users[role])
				}
				method, path := concrete(rt.pattern)
				var resp *http.Response
				var body string
				if method == http.MethodGet {
					resp, body = b.get(path)
				} else {
					resp, body = b.post(path, url.Values{"address": {"dora@client.example"}, "evidence": {"form"}, "confirm": {"yes"}})
				}
				allowed := slices.Contains(rt.roles, role)
				switch {
				case role == "":
					if resp.StatusCode != http.StatusSeeOther || location(resp) != "/login" {
						t.Errorf("without a session: %s to %q", resp.Status, location(resp))
					}
				case rt.pattern == "POST /logout":
					if resp.StatusCode != http.StatusSeeOther || location(resp) != "/login" {
						t.Errorf("logout: %s to %q", resp.Status, location(resp))
					}
				case allowed && (resp.StatusCode == http.StatusForbidden || resp.StatusCode >= 500 || location(resp) == "/login"):
					t.Errorf("%s may use it, got %s %s\n%s", role, resp.Status, location(resp), body)
				case !allowed && resp.StatusCode != http.StatusForbidden:
					t.Errorf("%s may not use it, got %s", role, resp.Status)
				case !allowed && !strings.Contains(body, "Your login cannot open this page."):
					t.Errorf("the 403 page does not say why:\n%s", body)
				}
			})
		}
	}
	if len(tc.queue.dropped) != 2 || tc.queue.dropped[0] != "Q1ANNA" { // the admin's and anna's
		t.Errorf("dropped %v; only the roles the table allows may drop", tc.queue.dropped)
	}
	if len(tc.absences.cancelled) != 1 || tc.absences.cancelled[0] != 1 { // the admin's; anna's finds it gone
		t.Errorf("cancelled absences %v; only the roles the table allows may cancel", tc.absences.cancelled)
	}
}

// TestMenuFollowsTable: each role's menu links exactly the pages it may open.
func TestMenuFollowsTable(t *testing.T) {
	tc := startConsole(t)
	for _, tt := range []struct {
		user       string
		has, lacks []string
	}{
		{"office", []string{`href="/today"`, `href="/refusals"`, `href="/queue"`, `href="/clients"`, `href="/keys"`}, nil},
		{"anna", []string{`href="/today"`, `href="/refusals"`, `href="/queue"`}, []string{`href="/clients"`}},
		{"audit", []string{`href="/today"`, `href="/archive"`, `href="/activity"`}, []string{`href="/refusals"`, `href="/queue"`, `href="/clients"`, `href="/keys"`}},
	} {
		_, body := tc.loggedIn(t, tt.user).get("/today")
		if m := contains(body, tt.has...); len(m) > 0 {
			t.Errorf("%s's menu lacks %v", tt.user, m)
		}
		for _, l := range tt.lacks {
			if strings.Contains(body, l) {
				t.Errorf("%s's menu links %s", tt.user, l)
			}
		}
	}
}

// TestCSRF: a form without the session's token, or with another
// session's, is refused and changes nothing; a login form without its
// cookie's token is refused; a request another site's page makes is
// refused whatever it carries.
func TestCSRF(t *testing.T) {
	tc := startConsole(t)
	admin := tc.loggedIn(t, "office")
	other := tc.loggedIn(t, "anna")
	for _, token := range []string{"-", other.csrf, "x"} {
		resp, body := admin.post("/queue/Q1ANNA/retry", url.Values{"csrf": {token}})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "security token") {
			t.Errorf("csrf %q: %s", token, resp.Status)
		}
	}
	resp, body := admin.postFile("/refusals/R7K2QX/consent", url.Values{"csrf": {"-"}, "address": {"dora@client.example"}, "evidence": {"f"}},
		"scan", "form.pdf", []byte("%PDF-1.7\n"))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("an upload without the token: %s\n%s", resp.Status, body)
	}
	if len(tc.queue.retried) != 0 || len(tc.recorder.consents) != 0 {
		t.Fatalf("a forged form was acted on: retried %v, consents %v", tc.queue.retried, tc.recorder.consents)
	}
	if resp, _ := admin.post("/queue/Q1ANNA/retry", nil); resp.StatusCode != http.StatusSeeOther || len(tc.queue.retried) != 1 {
		t.Errorf("with the token: %s, retried %v", resp.Status, tc.queue.retried)
	}

	fresh := tc.browser(t)
	resp, _ = fresh.post("/login", url.Values{"username": {"office"}, "password": {testPassword}, "csrf": {"guessed"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a login without the login page's token: %s", resp.Status)
	}

	req, _ := http.NewRequest(http.MethodPost, tc.url+"/queue/Q1ANNA/retry", strings.NewReader(url.Values{"csrf": {admin.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := admin.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(tc.queue.retried) != 1 {
		t.Errorf("a cross-site request: %s, retried %v", resp.Status, tc.queue.retried)
	}
}

// TestHeaders: every answer, a login page, an asset, a 404 and a page
// behind the login, forbids framing, inline script and style and other
// origins, sends no referrer and is not sniffed; the session cookie is
// __Host-, Secure, HttpOnly and SameSite=Strict.
func TestHeaders(t *testing.T) {
	tc := startConsole(t)
	b := tc.browser(t)
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
	}
	check := func(what string, resp *http.Response) {
		t.Helper()
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", what, k, got, v)
			}
		}
	}
	resp, _ := b.get("/login")
	check("login page", resp)
	resp, body := b.get("/static/console.css")
	check("stylesheet", resp)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(body, ".facts") {
		t.Errorf("stylesheet: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	resp, _ = b.get("/nowhere")
	check("404", resp)
	if resp, body := b.get("/static/"); resp.StatusCode != http.StatusNotFound || strings.Contains(body, `href="console.css"`) {
		t.Errorf("the assets' folder is listed: %s", resp.Status)
	}
	b.get("/login")
	resp, _ = b.post("/login", url.Values{"username": {"office"}, "password": {testPassword}})
	check("login", resp)
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if session == nil || !session.Secure || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/" || session.Domain != "" {
		t.Fatalf("session cookie %+v", session)
	}
	if !strings.HasPrefix(session.Name, "__Host-") || len(session.Value) < 40 {
		t.Errorf("session cookie %q of %d characters", session.Name, len(session.Value))
	}
	resp, body = b.get("/today")
	check("today", resp)
	if strings.Contains(body, "<script") || strings.Contains(body, "style=") {
		t.Error("a page has script or inline style, which the policy would block")
	}
}

// TestClients: the Clients page shows a page of 50 with a link to the
// next, the search goes to the directory, and consents about to end are
// listed on the first page.
func TestClients(t *testing.T) {
	tc := startConsole(t)
	admin := tc.loggedIn(t, "office")
	_, body := admin.get("/clients")
	if m := contains(body, "c000@client.example", "c049@client.example", "after=c049%40client.example", "Consents ending in the next 30 days",
		"c005@client.example (Client 5): consent to unencrypted email ends on 2026-12-20", "These are the soonest", "passphrase on file"); len(m) > 0 {
		t.Errorf("the first page lacks %v", m)
	}
	if strings.Contains(body, "c050@client.example") {
		t.Error("the first page shows more than 50")
	}
	_, body = admin.get("/clients?after=c049%40client.example")
	if m := contains(body, "c050@client.example", "c099@client.example", "Back to the first page"); len(m) > 0 || strings.Contains(body, "ending in the next 30 days") {
		t.Errorf("the second page lacks %v", m)
	}
	_, body = admin.get("/clients?q=Client+11")
	if m := contains(body, "c011@client.example", "c119@client.example"); len(m) > 0 || strings.Contains(body, "c012@") {
		t.Errorf("the search lacks %v", m)
	}
	_, body = admin.get("/clients/c007@client.example")
	if m := contains(body, "revoked", "asked by phone", "passphrase-set", "office (console)", "intake form", "No key for this address"); len(m) > 0 {
		t.Errorf("the client's page lacks %v", m)
	}
	if resp, _ := admin.get("/clients/nobody@client.example"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown client: %s", resp.Status)
	}
	_, body = admin.get("/clients?q=%3Cscript%3E")
	if !strings.Contains(body, "No client matches “&lt;script&gt;”") {
		t.Errorf("a search for markup:\n%s", body)
	}
}

// TestKeys: a proposed key is accepted only from its confirmation page,
// which shows the fingerprint in groups of four; a key in use cannot be
// "accepted"; removing asks first; a pasted key is imported.
func TestKeys(t *testing.T) {
	tc := startConsole(t)
	admin := tc.loggedIn(t, "office")
	_, body := admin.get("/keys")
	if m := contains(body, "Offered by clients, waiting for you", "AB12 CD34 EF56 AB12", "eli@client.example", "Compare and accept"); len(m) > 0 {
		t.Errorf("the keys page lacks %v", m)
	}
	_, body = admin.get("/keys/" + proposedFpr + "/accept")
	if m := contains(body, "AB12 CD34 EF56 AB12 CD34 EF56 AB12 CD34 EF56 AB12", "compare it group by group", "The fingerprints match"); len(m) > 0 {
		t.Errorf("the confirmation lacks %v", m)
	}
	if resp, _ := admin.post("/keys/"+proposedFpr+"/accept", nil); location(resp) != "/keys/"+proposedFpr+"/accept" || len(tc.keys.accepted) != 0 {
		t.Errorf("accepted without confirming: %v", tc.keys.accepted)
	}
	if resp, _ := admin.post("/keys/"+proposedFpr+"/accept", url.Values{"confirm": {"yes"}}); location(resp) != "/keys?done=accept" || len(tc.keys.accepted) != 1 {
		t.Errorf("confirmed: %s, accepted %v", location(resp), tc.keys.accepted)
	}
	if resp, _ := admin.get("/keys/" + usableFpr + "/accept"); resp.StatusCode != http.StatusConflict {
		t.Errorf("accepting a key in use: %s", resp.Status)
	}
	if resp, _ := admin.get("/keys/0000/remove"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("removing a key not there: %s", resp.Status)
	}
	if resp, _ := admin.post("/keys/"+usableFpr+"/remove", url.Values{"confirm": {"yes"}}); location(resp) != "/keys?done=remove" || len(tc.keys.removed) != 1 {
		t.Errorf("remove: %s, removed %v", location(resp), tc.keys.removed)
	}
	if resp, body := admin.post("/keys/import", url.Values{"key": {"not a key"}}); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Nothing was imported: no OpenPGP key in it") {
		t.Errorf("importing nonsense: %s", resp.Status)
	}
	if resp, _ := admin.postFile("/keys/import", nil, "keyfile", "dora.asc", []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")); location(resp) != "/keys?done=import" || tc.keys.imported != 1 {
		t.Errorf("importing a file: %s, %d imported", location(resp), tc.keys.imported)
	}
}

// TestArchivePage: an auditor sees the chain's head to write down (with
// the verify command that uses it), the last verification and the holds.
func TestArchivePage(t *testing.T) {
	tc := startConsole(t)
	_, body := tc.loggedIn(t, "audit").get("/archive")
	if m := contains(body, "#4711", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		"sealpost archive verify --expect 4711:9f86d081", "40 records up to #40", "H-2026-1", "2 client address(es) from 2026-01-01"); len(m) > 0 {
		t.Errorf("the archive page lacks %v", m)
	}
	admin := tc.loggedIn(t, "office")
	admin.get("/archive")
	if _, body := admin.post("/archive/prune-check", nil); !strings.Contains(body, "A prune now would remove 1 segment(s)") || !strings.Contains(body, "Nothing was removed") {
		t.Errorf("the dry run:\n%s", body)
	}
	auditor := tc.loggedIn(t, "audit")
	_, body = auditor.get("/archive")
	if strings.Contains(body, "prune-check") {
		t.Error("the auditor is offered the prune check")
	}
	resp, body := auditor.post("/archive/timeline", url.Values{"client": {"dora@client.example"}})
	if m := contains(body, "Records about dora@client.example", "message, outbound", "event, delivered", "Only the first 3"); resp.StatusCode != 200 || len(m) > 0 {
		t.Errorf("the timeline: %s, lacks %v", resp.Status, m)
	}
	if strings.Contains(tc.logs.String(), "dora@") {
		t.Error("the log names the client")
	}
}

// TestActivityLog: every change made in the console is recorded with who,
// what, which and from where, with the client's address for the record
// only; the auditor's Activity page lists them newest first, without the
// address.
func TestActivityLog(t *testing.T) {
	tc := startConsole(t)
	admin := tc.loggedIn(t, "office")
	admin.postFile("/refusals/R7K2QX/consent", url.Values{"address": {"dora@client.example"}, "evidence": {"form"}}, "", "", nil)
	admin.post("/keys/"+proposedFpr+"/accept", url.Values{"confirm": {"yes"}})
	anna := tc.loggedIn(t, "anna")
	anna.post("/queue/Q1ANNA/drop", url.Values{"confirm": {"yes"}})
	anna.post("/queue/Q1ANNA/drop", nil) // not confirmed: no change, no record
	if len(tc.activity.list) != 3 {
		t.Fatalf("recorded %+v", tc.activity.list)
	}
	if a := tc.activity.list[0]; a.Who != "office" || a.What != "consent-recorded" || a.Object != "1" || a.From != "127.0.0.1" ||
		len(a.Addresses) != 1 || a.Addresses[0] != "dora@client.example" {
		t.Errorf("the consent's record: %+v", a)
	}
	_, body := tc.loggedIn(t, "audit").get("/activity")
	for _, w := range []string{"dropped a queued message", "accepted a key a client offered", "recorded a client&#39;s consent", "Q1ANNA", proposedFpr, "127.0.0.1"} {
		if !strings.Contains(body, w) {
			t.Errorf("the activity page lacks %q", w)
		}
	}
	if strings.Index(body, "dropped a queued message") > strings.Index(body, "recorded a client") || strings.Contains(body, "dora@client.example") {
		t.Errorf("not newest first, or names the client:\n%s", body)
	}
}

// TestTodayByRole: the admin sees everything with the warnings; the
// auditor the record's day and health, no paths or queue warnings; the
// therapist their own queue and refusals only.
func TestTodayByRole(t *testing.T) {
	tc := startConsole(t)
	for _, tt := range []struct {
		user       string
		has, lacks []string
	}{
		{"office", []string{"12 messages sent, 3 clients&#39; messages received, 11 deliveries to the provider, 1 bounce, 2 refusals", "/etc/sealpost/tls/cert.pem",
			"40.0 GB free of 100.0 GB", "a message has waited in the queue for 2h 0m", "2 messages waiting"}, nil},
		{"audit", []string{"12 messages sent", "#40 ab12cd34ef56", "All is well"}, []string{"/etc/sealpost", "GB free", "waited in the queue"}},
		{"anna", []string{"Your queued mail", "1 message waiting, the oldest for 2h", "A message of yours has waited over an hour", "1 recipient or message refused today"},
			[]string{"12 messages sent", "/etc/sealpost", "ab12cd34ef56", "2 messages waiting"}},
	} {
		_, body := tc.loggedIn(t, tt.user).get("/today")
		if m := contains(body, tt.has...); len(m) > 0 {
			t.Errorf("%s's Today lacks %v", tt.user, m)
		}
		for _, w := range tt.lacks {
			if strings.Contains(body, w) {
				t.Errorf("%s's Today shows %q", tt.user, w)
			}
		}
	}
}
