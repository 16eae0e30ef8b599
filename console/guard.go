package console

import (
	"crypto/subtle"
	"errors"
	"mime"
	"net"
	"net/http"
	"slices"
	"time"
)

// contentSecurityPolicy allows the console's own stylesheet and images and
// nothing else: no script at all, no inline style, no other origin, no
// framing, forms posted only to the console.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// The largest request bodies: a form with an uploaded scan (maxUpload and
// its fields), and any other form (a pasted key fits).
const (
	maxUpload        = 10 << 20
	maxUploadRequest = maxUpload + 1<<20
	maxFormRequest   = 1 << 20
)

// withHeaders sets what every answer carries, and logs the request without
// its path's values or query: a route's pattern names no client.
func (s *Server) withHeaders(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, nil, http.StatusForbidden, "This request came from another site, so the console refused it. Open the console's page and try again.")
	}))
	protected := cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		h.Set("Cache-Control", "no-store")
		rec := &accessRecord{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		protected.ServeHTTP(rec, r)
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		s.log.Info("console request", "method", r.Method, "route", r.Pattern, "status", rec.status,
			"ms", time.Since(start).Milliseconds(), "user", rec.user, "role", string(rec.role), "remote", host)
	})
}

// accessRecord is what the access log learns while a request is served.
type accessRecord struct {
	http.ResponseWriter
	status int
	user   string
	role   Role
}

func (a *accessRecord) WriteHeader(code int) {
	a.status = code
	a.ResponseWriter.WriteHeader(code)
}

func (a *accessRecord) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// guard serves a route to a live session of one of its roles: without one,
// the login page; with another role, 403; a form without the session's
// CSRF token, 403.
func (s *Server) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var token string
		if c, err := r.Cookie(sessionCookie); err == nil {
			token = c.Value
		}
		sess, expired := s.sessions.get(token, s.o.Now())
		if sess == nil {
			target := "/login"
			if expired {
				target += "?ended=1"
			}
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		if rec, ok := w.(*accessRecord); ok {
			rec.user, rec.role = sess.user, sess.role
		}
		stages := rt.stages
		if stages == nil {
			stages = []string{stageFull}
		}
		if !slices.Contains(stages, sess.stage) {
			switch sess.stage {
			case stageCode:
				http.Redirect(w, r, "/login/code", http.StatusSeeOther)
			case stageEnroll:
				http.Redirect(w, r, "/account/totp", http.StatusSeeOther)
			default:
				http.Redirect(w, r, "/today", http.StatusSeeOther)
			}
			return
		}
		if !slices.Contains(rt.roles, sess.role) {
			s.fail(w, r, sess, http.StatusForbidden, "Your login cannot open this page.")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := parseForm(w, r); err != nil {
				s.fail(w, r, sess, http.StatusRequestEntityTooLarge, "The form was too large: a scan may be at most 10 MB.")
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(sess.csrf)) != 1 {
				s.fail(w, r, sess, http.StatusForbidden, "This form was not sent from a page of your session (its security token is missing or old). Open the page again and send it from there.")
				return
			}
		}
		rt.handle(w, r, sess)
	})
}

// parseForm reads a posted form, an upload included, within its limit.
func parseForm(w http.ResponseWriter, r *http.Request) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "multipart/form-data" {
		r.Body = http.MaxBytesReader(w, r.Body, maxUploadRequest)
		// All of it in memory: a scan of a consent form is not written to
		// the server's disk in clear, not even to a temporary file.
		err := r.ParseMultipartForm(maxUploadRequest)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormRequest)
	return r.ParseForm()
}
