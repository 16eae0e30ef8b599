package console

import (
	"bytes"
	"context"
	"image/png"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP (RFC 6238): six digits every 30 seconds from an authenticator app,
// asked after the password of a login that set it up. A code is taken
// within one step either side of now, once, and failures count against the
// same throttle as passwords.

const (
	totpIssuer = "sealpost"
	// codeWait is how long the password stays good for the code to follow.
	codeWait = 5 * time.Minute
)

var totpOpts = totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// checkCode validates a code for user and uses it up; false for a wrong
// code, one already used (here or on another node), a login without TOTP,
// or a store that cannot be read.
func (s *Server) checkCode(ctx context.Context, user, code string, now time.Time) bool {
	if s.totp == nil {
		return false
	}
	e, ok, err := s.totp.LoginCode(ctx, user)
	if err != nil {
		s.log.Error("console: the login codes cannot be read", "user", user, "err", err)
		return false
	}
	if !ok {
		return false
	}
	code = strings.ReplaceAll(strings.TrimSpace(code), " ", "")
	step := now.Unix() / 30
	for _, st := range []int64{step - 1, step, step + 1} {
		want, err := totp.GenerateCodeCustom(e.Secret, time.Unix(st*30, 0), totpOpts)
		if err == nil && st > e.LastStep && len(code) == len(want) && code == want {
			used, err := s.totp.UseLoginCodeStep(ctx, user, st)
			if err != nil {
				s.log.Error("console: the login code could not be marked used", "user", user, "err", err)
			}
			return used && err == nil
		}
	}
	return false
}

type codeData struct {
	Problem string
}

// codePage asks for the code after the password.
func (s *Server) codePage(w http.ResponseWriter, r *http.Request, sess *session) {
	s.render(w, r, http.StatusOK, "code", "Your code", sess, codeData{})
}

func (s *Server) code(w http.ResponseWriter, r *http.Request, sess *session) {
	now := s.o.Now()
	if now.Sub(sess.created) > codeWait {
		s.sessions.end(sess.key)
		http.Redirect(w, r, "/login?ended=1", http.StatusSeeOther)
		return
	}
	ip := clientIP(r)
	keys := s.throttle.Keys(now, ip, sess.user)
	if s.throttle.Blocked(now, keys...) {
		s.render(w, r, http.StatusTooManyRequests, "code", "Your code", sess, codeData{Problem: "Too many failed logins from here or for this name. Try again in an hour, or ask your admin."})
		return
	}
	if !s.checkCode(r.Context(), sess.user, r.PostFormValue("code"), now) {
		wait := s.throttle.Fail(now, keys...)
		s.log.Warn("console login failed: wrong code", "user", sess.user, "remote", ip.String(), "delay", wait)
		if wait > 0 {
			s.o.LoginDelay(r.Context(), wait)
		}
		s.render(w, r, http.StatusUnauthorized, "code", "Your code", sess, codeData{Problem: "That code is not the one your app shows now (or was used already). Type the code it shows."})
		return
	}
	s.throttle.Succeeded(now, ip, sess.user)
	s.sessions.update(sess.key, func(x *session) { x.stage = stageFull })
	s.log.Info("console login", "user", sess.user, "role", string(sess.role), "remote", ip.String(), "totp", true)
	http.Redirect(w, r, "/today", http.StatusSeeOther)
}

type totpData struct {
	Enrolled bool
	Since    time.Time
	Secret   string // grouped, for typing in by hand
	Required bool
	Problem  string
	Done     string
}

// totpPage sets up TOTP for the login, or says it is on.
func (s *Server) totpPage(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.totp == nil {
		s.fail(w, r, sess, http.StatusNotFound, "Login codes are not available here.")
		return
	}
	d := totpData{Required: s.totpRequired(sess.role)}
	switch r.URL.Query().Get("done") {
	case "on":
		d.Done = "Codes are on: from your next login the console asks for one after your password."
	case "off":
		d.Done = "Codes are off for your login."
	}
	e, ok, err := s.totp.LoginCode(r.Context(), sess.user)
	if err != nil {
		s.log.Error("console: the login codes cannot be read", "user", sess.user, "err", err)
		s.fail(w, r, sess, http.StatusServiceUnavailable, "Login codes cannot be read right now; the log says why.")
		return
	}
	if ok {
		d.Enrolled, d.Since = true, e.Since
	} else {
		d.Secret = groupsOfFour(s.enrollSecret(sess))
	}
	s.render(w, r, http.StatusOK, "totp", "Login codes (TOTP)", sess, d)
}

// enrollSecret is the secret being set up in this session: made once,
// kept with the session until confirmed.
func (s *Server) enrollSecret(sess *session) string {
	if sess.enrollSecret != "" {
		return sess.enrollSecret
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: totpIssuer, AccountName: sess.user, Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return ""
	}
	secret := key.Secret()
	s.sessions.update(sess.key, func(x *session) { x.enrollSecret = secret })
	sess.enrollSecret = secret
	return secret
}

// totpQR is the set-up secret as a QR code an authenticator app scans.
func (s *Server) totpQR(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.totp == nil {
		http.NotFound(w, r)
		return
	}
	secret := s.enrollSecret(sess)
	key, err := otp.NewKeyFromURL("otpauth://totp/" + totpIssuer + ":" + url.PathEscape(sess.user) + "?secret=" + secret + "&issuer=" + totpIssuer + "&period=30&digits=6&algorithm=SHA1")
	if err != nil || secret == "" {
		http.NotFound(w, r)
		return
	}
	img, err := key.Image(240, 240)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	w.Header().Set("Content-Type", "image/png")
	w.Write(b.Bytes())
}

// enroll confirms the set-up with a code from the app, so a secret is
// never kept that the app does not have.
func (s *Server) enroll(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.totp == nil {
		s.fail(w, r, sess, http.StatusNotFound, "Login codes are not available here.")
		return
	}
	secret := sess.enrollSecret
	code := strings.ReplaceAll(strings.TrimSpace(r.PostFormValue("code")), " ", "")
	ok, _ := totp.ValidateCustom(code, secret, s.o.Now(), totpOpts)
	if secret == "" || !ok {
		d := totpData{Secret: groupsOfFour(s.enrollSecret(sess)), Required: s.totpRequired(sess.role),
			Problem: "That code does not match: scan the code (or type the key) into your app again, then type the six digits it shows."}
		s.render(w, r, http.StatusUnprocessableEntity, "totp", "Login codes (TOTP)", sess, d)
		return
	}
	now := s.o.Now()
	err := s.totp.SetLoginCode(r.Context(), sess.user, LoginCode{Secret: secret, Since: now, LastStep: now.Unix() / 30})
	if err != nil {
		s.fail(w, r, sess, http.StatusInternalServerError, "The code could not be saved; the log says why.")
		s.log.Error("console: totp", "err", err)
		return
	}
	s.sessions.update(sess.key, func(x *session) { x.enrollSecret, x.stage = "", stageFull })
	s.log.Info("console: totp on", "user", sess.user)
	s.note(r, sess, "totp-on", sess.user)
	http.Redirect(w, r, "/account/totp?done=on", http.StatusSeeOther)
}

// unenroll turns codes off, with a current code, unless the role needs them.
func (s *Server) unenroll(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.totp == nil || s.totpRequired(sess.role) {
		s.fail(w, r, sess, http.StatusForbidden, "Codes are required for your role; they cannot be turned off.")
		return
	}
	if !s.checkCode(r.Context(), sess.user, r.PostFormValue("code"), s.o.Now()) {
		e, _, _ := s.totp.LoginCode(r.Context(), sess.user)
		s.render(w, r, http.StatusUnprocessableEntity, "totp", "Login codes (TOTP)", sess, totpData{Enrolled: true, Since: e.Since,
			Problem: "That code is not the one your app shows now; codes stay on."})
		return
	}
	if err := s.totp.RemoveLoginCode(r.Context(), sess.user); err != nil {
		s.log.Error("console: totp", "err", err)
		s.fail(w, r, sess, http.StatusInternalServerError, "The change could not be saved; the log says why.")
		return
	}
	s.log.Info("console: totp off", "user", sess.user)
	s.note(r, sess, "totp-off", sess.user)
	http.Redirect(w, r, "/account/totp?done=off", http.StatusSeeOther)
}

func (s *Server) totpRequired(role Role) bool { return role == Admin && s.requireTOTP.Load() }
