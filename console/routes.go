package console

import (
	"net/http"
	"strings"
)

// route is a page or an action and the roles that may use it. The table
// (routes) is the one place roles are granted; guard enforces it on every
// request, and a test walks it for every role.
type route struct {
	pattern string
	roles   []Role
	handle  func(http.ResponseWriter, *http.Request, *session)
	// stages are the session stages it opens for; none: logged in fully.
	stages []string
}

var (
	whileCode   = []string{stageCode}
	whileEnroll = []string{stageFull, stageEnroll}
	anyStage    = []string{stageFull, stageCode, stageEnroll}
)

var (
	everyone     = []Role{Admin, Therapist, Auditor}
	adminOnly    = []Role{Admin}
	sendersRoles = []Role{Admin, Therapist} // therapists: their own mail only
	recordRoles  = []Role{Admin, Auditor}
)

// table is every route behind a login.
func (s *Server) table() []route {
	return []route{
		{"GET /{$}", everyone, s.home, nil},
		{"POST /logout", everyone, s.logout, anyStage},
		{"GET /login/code", everyone, s.codePage, whileCode},
		{"POST /login/code", everyone, s.code, whileCode},
		{"GET /account/totp", everyone, s.totpPage, whileEnroll},
		{"GET /account/totp/qr.png", everyone, s.totpQR, whileEnroll},
		{"POST /account/totp", everyone, s.enroll, whileEnroll},
		{"POST /account/totp/off", everyone, s.unenroll, nil},
		{"GET /today", everyone, s.today, nil},
		{"GET /refusals", sendersRoles, s.refusals, nil},
		{"GET /refusals/{ref}", sendersRoles, s.refusal, nil},
		{"POST /refusals/{ref}/consent", adminOnly, s.recordConsent, nil},
		{"POST /refusals/{ref}/key", adminOnly, s.importKey, nil},
		{"POST /refusals/{ref}/passphrase", adminOnly, s.setPassphrase, nil},
		{"GET /clients", adminOnly, s.clients, nil},
		{"GET /clients/{address}", adminOnly, s.client, nil},
		{"GET /archive", recordRoles, s.archivePage, nil},
		{"POST /archive/timeline", recordRoles, s.timeline, nil},
		{"POST /archive/prune-check", adminOnly, s.pruneCheck, nil},
		{"GET /activity", recordRoles, s.activity, nil},
		{"GET /keys", adminOnly, s.keys, nil},
		{"POST /keys/import", adminOnly, s.importKeys, nil},
		{"GET /keys/{fpr}/accept", adminOnly, s.confirmKey, nil},
		{"POST /keys/{fpr}/accept", adminOnly, s.changeKey, nil},
		{"GET /keys/{fpr}/remove", adminOnly, s.confirmKey, nil},
		{"POST /keys/{fpr}/remove", adminOnly, s.changeKey, nil},
		{"GET /queue", sendersRoles, s.queue, nil},
		{"POST /queue/retry-all", sendersRoles, s.retryAll, nil},
		{"POST /queue/{id}/retry", sendersRoles, s.retry, nil},
		{"GET /queue/{id}/drop", sendersRoles, s.confirmDrop, nil},
		{"POST /queue/{id}/drop", sendersRoles, s.drop, nil},
		{"GET /absences", sendersRoles, s.absences, nil},
		{"POST /absences", sendersRoles, s.addAbsence, nil},
		{"GET /absences/{absence}/cancel", sendersRoles, s.confirmCancelAbsence, nil},
		{"POST /absences/{absence}/cancel", sendersRoles, s.cancelAbsence, nil},
	}
}

// routes is the console's handler: the login page and the assets for
// anyone, the table's routes for their roles, 404 for the rest.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	assets := http.FileServerFS(staticFS)
	mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no listings
			s.fail(w, r, nil, http.StatusNotFound, "There is no such page in the console.")
			return
		}
		assets.ServeHTTP(w, r)
	}))
	for _, rt := range s.table() {
		mux.Handle(rt.pattern, s.guard(rt))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, s.sessionOf(r), http.StatusNotFound, "There is no such page in the console.")
	})
	return s.withHeaders(mux)
}

func (s *Server) home(w http.ResponseWriter, r *http.Request, _ *session) {
	http.Redirect(w, r, "/today", http.StatusSeeOther)
}

// sessionOf is the live session of the request, if any, for pages outside
// the table (a 404 shows the menu to someone logged in).
func (s *Server) sessionOf(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	sess, _ := s.sessions.get(c.Value, s.o.Now())
	return sess
}
