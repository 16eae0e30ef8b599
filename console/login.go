package console

import (
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
)

// loginCookie holds the login form's own CSRF token until the session's
// takes over: a login can be forged from another site too (logging the
// victim in as the attacker).
const loginCookie = "__Host-sealpost-login"

func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

type loginData struct {
	Token   string
	Ended   bool   // the session ended by time
	Problem string // why the last attempt failed
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if sess := s.sessionOf(r); sess != nil && sess.stage == stageFull {
		http.Redirect(w, r, "/today", http.StatusSeeOther)
		return
	}
	s.showLogin(w, r, http.StatusOK, loginData{Ended: r.URL.Query().Get("ended") == "1"})
}

func (s *Server) showLogin(w http.ResponseWriter, r *http.Request, code int, d loginData) {
	d.Token = randomToken()
	setCookie(w, loginCookie, d.Token, 3600)
	s.render(w, r, code, "login", "Log in", nil, d)
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormRequest)
	if err := r.ParseForm(); err != nil {
		s.showLogin(w, r, http.StatusBadRequest, loginData{Problem: "The form could not be read. Try again."})
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		s.showLogin(w, r, http.StatusForbidden, loginData{Problem: "This login form was old or not from the console. Try again on this page."})
		return
	}
	username, pw := r.PostFormValue("username"), r.PostFormValue("password")
	now := s.o.Now()
	ip := clientIP(r)
	keys := s.throttle.Keys(now, ip, username)
	if s.throttle.Blocked(now, keys...) {
		s.log.Warn("console login refused: too many failures", "user", username, "remote", ip.String())
		s.showLogin(w, r, http.StatusTooManyRequests, loginData{Problem: "Too many failed logins from here or for this name. Try again in an hour, or ask your admin."})
		return
	}
	l, ok := s.verify(username, pw)
	if !ok {
		wait := s.throttle.Fail(now, keys...)
		s.log.Warn("console login failed", "user", username, "remote", ip.String(), "delay", wait)
		if wait > 0 {
			s.o.LoginDelay(r.Context(), wait)
		}
		s.showLogin(w, r, http.StatusUnauthorized, loginData{Problem: "That name and password do not match a login of this console."})
		return
	}
	stage, next := stageFull, "/today"
	hasCode, err := s.hasTOTP(r.Context(), l.Username)
	if err != nil {
		// Never the password alone for a login that may have codes.
		s.log.Error("console login: the login codes cannot be read", "user", l.Username, "err", err)
		s.showLogin(w, r, http.StatusServiceUnavailable, loginData{Problem: "Logins cannot be checked right now. Try again in a few minutes; if it lasts, tell your IT admin."})
		return
	}
	switch {
	case hasCode:
		// The password alone does not log in: the throttle learns of
		// success only with the code.
		stage, next = stageCode, "/login/code"
	case s.totpRequired(l.Role):
		stage, next = stageEnroll, "/account/totp"
	}
	if stage != stageCode {
		s.throttle.Succeeded(now, ip, username)
		s.log.Info("console login", "user", l.Username, "role", string(l.Role), "remote", ip.String())
	}
	token, _ := s.sessions.start(l, stage, now)
	setCookie(w, sessionCookie, token, 0)
	setCookie(w, loginCookie, "", -1)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) hasTOTP(ctx context.Context, user string) (bool, error) {
	if s.totp == nil {
		return false, nil
	}
	_, ok, err := s.totp.LoginCode(ctx, user)
	return ok, err
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess *session) {
	s.sessions.end(sess.key)
	setCookie(w, sessionCookie, "", -1)
	s.log.Info("console logout", "user", sess.user)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func clientIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip, _ := netip.ParseAddr(host)
	return ip.Unmap()
}
