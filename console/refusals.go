package console

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/sealpost/sealpost/record"
)

// reasonWords are a refusal's code in a therapist's words: what happened,
// and what they can do about it.
var reasonWords = map[string]struct{ What, Todo string }{
	"nothing_on_file":      {"The recipient has no passphrase, encryption key or written consent to unencrypted email on file.", askAdmin},
	"consent_revoked":      {"The client withdrew their consent to unencrypted email.", askAdmin},
	"consent_expired":      {"The client's consent to unencrypted email ran out.", askAdmin},
	"key_unusable":         {"The recipient's encryption key can no longer be used (expired, revoked or unable to encrypt).", askAdmin},
	"professional_revoked": {"The recipient is no longer on file as a professional recipient.", askAdmin},
	"professional_expired": {"The professional agreement for the recipient ran out.", askAdmin},
	"bad_address":          {"The address could not be used.", "Check the address for a typing error and send again."},
	"content_rule":         {"The message held something that may not go out in unencrypted email (a content rule of the practice).", "Take it out and send again, or send it to a recipient who gets encrypted mail."},
	"too_much_to_check":    {"The message held more text than can be checked for unencrypted email.", "Send it to a recipient with a key or a passphrase, or in shorter messages."},
	"malformed":            {"The message was damaged as the mail program wrote it.", "Write the message anew and send it again."},
	"too_large_to_seal":    {"The message was too large to seal in a PDF for this client.", "Send the attachments in separate messages."},
	"passphrase_changed":   {"The client's passphrase changed while the message was being sent.", "Simply send it again."},
	"partial_send":         {"Another recipient of the message was refused, so nobody got it.", "Send it again without the refused recipient, or once your admin has set them up."},
}

const askAdmin = "Your admin can record what is missing here. Once they have, send the message again: nothing was sent to anybody."

// fixable are the codes an admin fixes by recording a consent, a key or a
// passphrase for the recipient.
var fixable = []string{"nothing_on_file", "consent_revoked", "consent_expired", "key_unusable", "professional_revoked", "professional_expired"}

// refusalRow is a refusal as the pages show it.
type refusalRow struct {
	Refusal
	What, Todo string
	Fixable    bool
}

func rowOf(f Refusal) refusalRow {
	w, ok := reasonWords[f.Code]
	if !ok {
		w.What, w.Todo = "Refused by the practice's rules ("+f.Code+").", askAdmin
	}
	return refusalRow{Refusal: f, What: w.What, Todo: w.Todo, Fixable: f.Recipient && slices.Contains(fixable, f.Code)}
}

// scopeRefusals keeps one account's refusals; "" keeps all.
func scopeRefusals(list []Refusal, account string) []Refusal {
	if account == "" {
		return list
	}
	var out []Refusal
	for _, f := range list {
		if f.Account == account {
			out = append(out, f)
		}
	}
	return out
}

// accountOf is the account whose mail a session may see: a therapist's
// own, or "" (all) for an admin.
func accountOf(sess *session) string {
	if sess.role == Therapist {
		return sess.user
	}
	return ""
}

// refusalsShown is how many refusals one page lists, newest first.
const refusalsShown = 500

type refusalsData struct {
	More    int // refusals in the time not listed
	Days    int
	Choices []int
	Rows    []refusalRow
	Admin   bool
	Problem string
}

func (s *Server) refusals(w http.ResponseWriter, r *http.Request, sess *session) {
	days, _ := strconv.Atoi(r.URL.Query().Get("days"))
	choices := []int{1, 7, 30, 90}
	if !slices.Contains(choices, days) {
		days = 7
	}
	now := s.o.Now()
	since := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location()).AddDate(0, 0, 1-days)
	d := refusalsData{Days: days, Choices: choices, Admin: sess.role == Admin}
	list, err := s.o.Refusals.Refusals(r.Context(), since)
	if err != nil {
		s.log.Error("console: refusals", "err", err)
		d.Problem = "The archive's refusals cannot be read right now; the log says why."
	}
	list = scopeRefusals(list, accountOf(sess))
	for i := len(list) - 1; i >= 0 && len(d.Rows) < refusalsShown; i-- { // newest first
		d.Rows = append(d.Rows, rowOf(list[i]))
	}
	d.More = len(list) - len(d.Rows)
	s.render(w, r, http.StatusOK, "refusals", "Refused recipients", sess, d)
}

// refusalData is one refusal's page, with the admin's forms.
type refusalData struct {
	Ref     string
	Rows    []refusalRow
	Admin   bool
	CanFix  bool
	Done    string // what was just recorded
	Problem string // why the last form was not taken
	Form    fixForm
	Today   string
}

// fixForm is what the admin typed, shown again when a form was refused
// (never a passphrase).
type fixForm struct {
	Address, Client, Evidence, Signed, Expires, Key string
}

var doneWords = map[string]string{
	"consent":    "The consent is recorded, with its scan in the archive where one was given. The therapist can send the message again now.",
	"key":        "The key is in the keyring. The therapist can send the message again now: it goes encrypted.",
	"passphrase": "The passphrase is recorded. The therapist can send the message again now: it goes as a sealed PDF.",
}

// findRefusal is the refusal a session may see under the URL's reference:
// a therapist's own only, so guessing another's reference shows nothing.
func (s *Server) findRefusal(r *http.Request, sess *session) (string, []refusalRow, bool) {
	ref, ok := record.NormalizeRef(r.PathValue("ref"))
	if !ok {
		return "", nil, false
	}
	found, err := s.o.Refusals.Refusal(r.Context(), ref)
	if err != nil {
		s.log.Error("console: refusal", "err", err)
		return ref, nil, false
	}
	var rows []refusalRow
	for _, f := range scopeRefusals(found, accountOf(sess)) {
		rows = append(rows, rowOf(f))
	}
	return ref, rows, len(rows) > 0
}

func (s *Server) refusal(w http.ResponseWriter, r *http.Request, sess *session) {
	ref, rows, ok := s.findRefusal(r, sess)
	if !ok {
		s.fail(w, r, sess, http.StatusNotFound, "No refusal with this reference is yours to see. The reference is in the error message, e.g. \"(ref R7K2QX)\".")
		return
	}
	s.showRefusal(w, r, sess, http.StatusOK, ref, rows, refusalData{Done: doneWords[r.URL.Query().Get("done")]})
}

func (s *Server) showRefusal(w http.ResponseWriter, r *http.Request, sess *session, code int, ref string, rows []refusalRow, d refusalData) {
	d.Ref, d.Rows, d.Admin = ref, rows, sess.role == Admin
	d.CanFix = d.Admin && s.o.Recorder != nil && slices.ContainsFunc(rows, func(x refusalRow) bool { return x.Fixable })
	d.Today = s.o.Now().Format(time.DateOnly)
	if d.Form.Signed == "" {
		d.Form.Signed = d.Today
	}
	for _, row := range rows {
		if d.Form.Address == "" && row.Fixable && row.Address != "" {
			d.Form.Address = row.Address
		}
	}
	s.render(w, r, code, "refusal", "Refusal "+ref, sess, d)
}
