package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sealpost/sealpost/rules/hours"
)

type absenceForm struct{ From, Until, Note string }

type absencesData struct {
	Account  string   // whose absences are shown
	Accounts []string // an admin's choice: every therapist
	Admin    bool
	Today    string
	NoHours  bool      // the account has no office hours for an absence to close
	Rows     []Absence // current and coming
	Effect   string
	Form     absenceForm
	Done     string
	Problem  string
}

var absencesDone = map[string]string{
	"added":     "The absence is recorded.",
	"cancelled": "The absence is cancelled: the office hours are as before on those days. The registry keeps that it was set and who cancelled it.",
}

// noteMax keeps a note a note: it is shown in lists, never sent to clients.
const noteMax = 500

// therapists are the accounts an admin may choose, in name order.
func (s *Server) therapists() []string {
	var out []string
	for name, l := range s.logins.Load().byName {
		if l.Role == Therapist {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// absenceAccount is the account a request is about: a therapist's own
// whatever it asks; for an admin the one asked for, or the first. ok is
// false for an account that is no therapist's.
func (s *Server) absenceAccount(sess *session, asked string) (string, bool) {
	if own := accountOf(sess); own != "" {
		return own, true
	}
	all := s.therapists()
	if asked == "" {
		// The first therapist's; with none, a page that says so.
		if len(all) == 0 {
			return "", true
		}
		return all[0], true
	}
	return asked, slices.Contains(all, asked)
}

func (s *Server) absencesPage(w http.ResponseWriter, r *http.Request, sess *session, code int, d absencesData) {
	today, hasHours := s.o.Absences.Today(d.Account)
	d.Admin, d.Effect, d.Today, d.NoHours = sess.role == Admin, hours.AwayEffect, today, !hasHours
	if d.Admin {
		d.Accounts = s.therapists()
	}
	list, err := s.o.Absences.Absences(r.Context(), d.Account)
	if err != nil {
		s.log.Error("console: absences", "err", err)
		d.Problem = "The absences cannot be read right now; the log says why."
	}
	for _, a := range list {
		if a.Until >= d.Today { // dates as YYYY-MM-DD order as strings
			d.Rows = append(d.Rows, a)
		}
	}
	s.render(w, r, code, "absences", "Absences", sess, d)
}

func (s *Server) absences(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.o.Absences == nil {
		s.fail(w, r, sess, http.StatusNotFound, "Absences are not available here.")
		return
	}
	account, ok := s.absenceAccount(sess, r.URL.Query().Get("account"))
	if !ok {
		s.fail(w, r, sess, http.StatusNotFound, "There is no therapist's account of that name.")
		return
	}
	s.absencesPage(w, r, sess, http.StatusOK, absencesData{Account: account, Done: absencesDone[r.URL.Query().Get("done")]})
}

func absencesURL(sess *session, account, done string) string {
	q := url.Values{"done": {done}}
	if sess.role == Admin {
		q.Set("account", account)
	}
	return "/absences?" + q.Encode()
}

func (s *Server) addAbsence(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.o.Absences == nil {
		s.fail(w, r, sess, http.StatusNotFound, "Absences are not available here.")
		return
	}
	account, ok := s.absenceAccount(sess, r.PostFormValue("account"))
	if !ok || account == "" {
		s.fail(w, r, sess, http.StatusNotFound, "There is no therapist's account of that name.")
		return
	}
	f := absenceForm{From: strings.TrimSpace(r.PostFormValue("from")), Until: strings.TrimSpace(r.PostFormValue("until")), Note: strings.TrimSpace(r.PostFormValue("note"))}
	d := absencesData{Account: account, Form: f}
	existing, err := s.o.Absences.Absences(r.Context(), account)
	if err == nil {
		today, _ := s.o.Absences.Today(account)
		d.Problem = absenceProblem(f, today, existing)
	}
	if err != nil || d.Problem != "" {
		s.absencesPage(w, r, sess, http.StatusUnprocessableEntity, d)
		return
	}
	a, err := s.o.Absences.AddAbsence(r.Context(), Absence{Account: account, From: f.From, Until: f.Until, Note: f.Note, RecordedBy: recordedBy(sess)})
	if err != nil {
		s.log.Error("console: absence not recorded", "user", sess.user, "err", err)
		d.Problem = "The absence could not be recorded: " + err.Error()
		s.absencesPage(w, r, sess, http.StatusUnprocessableEntity, d)
		return
	}
	s.log.Info("console: absence added", "user", sess.user, "account", account, "id", a.ID)
	s.note(r, sess, "absence-added", absenceObject(a))
	http.Redirect(w, r, absencesURL(sess, account, "added"), http.StatusSeeOther)
}

// absenceProblem says, in a therapist's words, what is wrong with a new
// absence, or "" when nothing is.
func absenceProblem(f absenceForm, today string, existing []Absence) string {
	if f.From == "" || f.Until == "" {
		return "Give the first and the last day away."
	}
	from, err1 := hours.ParseDate(f.From)
	until, err2 := hours.ParseDate(f.Until)
	switch {
	case err1 != nil:
		return fmt.Sprintf("The first day away, %q, is not a date: write it as 2026-12-24.", f.From)
	case err2 != nil:
		return fmt.Sprintf("The last day away, %q, is not a date: write it as 2026-12-24.", f.Until)
	case until.Before(from):
		return fmt.Sprintf("The last day away (%s) is before the first (%s): swap them, or correct one.", until, from)
	case from.String() < today:
		return fmt.Sprintf("The first day away (%s) is in the past: an absence can start today (%s) at the earliest.", from, today)
	case utf8.RuneCountInString(f.Note) > noteMax:
		return fmt.Sprintf("The note is longer than %d characters; keep it short (it is only shown here).", noteMax)
	}
	for _, a := range existing {
		if a.From <= until.String() && from.String() <= a.Until {
			return fmt.Sprintf("These days overlap an absence already recorded, from %s to %s: cancel that one first, or choose days around it.", a.From, a.Until)
		}
	}
	return ""
}

// absenceObject names an absence in the activity record: which, whose,
// and its days, so the record reads without the registry.
func absenceObject(a Absence) string {
	return fmt.Sprintf("%d (%s, %s to %s)", a.ID, a.Account, a.From, a.Until)
}

// absence is the absence the URL names when the session may see it: a
// therapist asking for another account's is answered as if there were
// none.
func (s *Server) absence(r *http.Request, sess *session) (Absence, bool) {
	if s.o.Absences == nil {
		return Absence{}, false
	}
	id, err := strconv.ParseInt(r.PathValue("absence"), 10, 64)
	if err != nil {
		return Absence{}, false
	}
	accounts := s.therapists()
	if own := accountOf(sess); own != "" {
		accounts = []string{own}
	}
	for _, account := range accounts {
		list, err := s.o.Absences.Absences(r.Context(), account)
		if err != nil {
			s.log.Error("console: absences", "err", err)
			return Absence{}, false
		}
		for _, a := range list {
			if a.ID == id {
				return a, true
			}
		}
	}
	return Absence{}, false
}

const noSuchAbsence = "There is no such absence among yours (it may have been cancelled meanwhile)."

// confirmCancelAbsence asks before an absence is cancelled: the hours
// open again on those days, and mail that waits for them goes out.
func (s *Server) confirmCancelAbsence(w http.ResponseWriter, r *http.Request, sess *session) {
	a, ok := s.absence(r, sess)
	if !ok {
		s.fail(w, r, sess, http.StatusNotFound, noSuchAbsence)
		return
	}
	s.render(w, r, http.StatusOK, "absencecancel", fmt.Sprintf("Cancel the absence from %s to %s?", a.From, a.Until), sess, a)
}

func (s *Server) cancelAbsence(w http.ResponseWriter, r *http.Request, sess *session) {
	a, ok := s.absence(r, sess)
	if !ok {
		s.fail(w, r, sess, http.StatusNotFound, noSuchAbsence)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		http.Redirect(w, r, fmt.Sprintf("/absences/%d/cancel", a.ID), http.StatusSeeOther)
		return
	}
	if err := s.o.Absences.CancelAbsence(r.Context(), a.Account, a.ID, recordedBy(sess)); err != nil {
		s.fail(w, r, sess, http.StatusConflict, "It could not be cancelled: "+err.Error())
		return
	}
	s.log.Info("console: absence cancelled", "user", sess.user, "account", a.Account, "id", a.ID)
	s.note(r, sess, "absence-cancelled", absenceObject(a))
	http.Redirect(w, r, absencesURL(sess, a.Account, "cancelled"), http.StatusSeeOther)
}
