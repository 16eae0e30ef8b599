package console

import (
	"net/http"
)

// route is a page or an action and the roles that may use it. The table
// (routes) is the one place roles are granted; guard enforces it on every
// request, and a test walks it for every role.
type route struct {
	pattern string
	roles   []Role
	handle  func(http.ResponseWriter, *http.Request, *session)
}

var (
	everyone     = []Role{Admin, Therapist, Auditor}
	adminOnly    = []Role{Admin}
	sendersRoles = []Role{Admin, Therapist} // therapists: their own mail only
)

// table is every route behind a login.
func (s *Server) table() []route {
	return []route{
		{"GET /{$}", everyone, s.home},
		{"POST /logout", everyone, s.logout},
		{"GET /today", everyone, s.today},
		{"GET /refusals", sendersRoles, s.refusals},
		{"GET /refusals/{ref}", sendersRoles, s.refusal},
		{"POST /refusals/{ref}/consent", adminOnly, s.recordConsent},
		{"POST /refusals/{ref}/key", adminOnly, s.importKey},
		{"POST /refusals/{ref}/passphrase", adminOnly, s.setPassphrase},
		{"GET /clients", adminOnly, s.clients},
		{"GET /keys", adminOnly, s.keys},
		{"POST /keys/import", adminOnly, s.importKeys},
		{"GET /keys/{fpr}/accept", adminOnly, s.confirmKey},
		{"POST /keys/{fpr}/accept", adminOnly, s.changeKey},
		{"GET /keys/{fpr}/remove", adminOnly, s.confirmKey},
		{"POST /keys/{fpr}/remove", adminOnly, s.changeKey},
		{"GET /queue", sendersRoles, s.queue},
		{"POST /queue/retry-all", sendersRoles, s.retryAll},
		{"POST /queue/{id}/retry", sendersRoles, s.retry},
		{"GET /queue/{id}/drop", sendersRoles, s.confirmDrop},
		{"POST /queue/{id}/drop", sendersRoles, s.drop},
	}
}

// routes is the console's handler: the login page and the assets for
// anyone, the table's routes for their roles, 404 for the rest.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.Handle("GET /static/", http.FileServerFS(staticFS))
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
