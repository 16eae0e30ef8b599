package console

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Activity is a change made in the console or by a command on the server,
// for the archive's chain.
type Activity struct {
	Time      time.Time
	Who       string
	Role      string
	What      string // one of activityWords' keys
	Object    string // a consent id, a key's fingerprint, a queue id
	From      string // the browser's IP address
	Addresses []string
}

// ActivityLog keeps the console's changes in the archive's chain.
type ActivityLog interface {
	Record(ctx context.Context, a Activity) error
	// Since are the changes since a time, oldest first.
	Since(ctx context.Context, since time.Time) ([]Activity, error)
}

var activityWords = map[string]string{
	"consent-recorded":                      "recorded a client's consent to unencrypted email",
	"consent-recorded-no-hold":              "recorded a client's consent to unencrypted email, never held outside office hours",
	"consent-recorded-prefer-clear":         "recorded a client's consent to unencrypted email, in clear even with a passphrase on file",
	"consent-recorded-prefer-clear-no-hold": "recorded a client's consent to unencrypted email, in clear even with a passphrase on file and never held outside office hours",
	"consent-revoked":                       "recorded that a client withdrew consent to unencrypted email",
	"consents-imported":                     "imported clients' consents from a file",
	"professional-recorded":                 "recorded a professional recipient (email in clear)",
	"professional-revoked":                  "recorded that a recipient is a professional no longer",
	"passphrase-set":                        "recorded a client's passphrase",
	"passphrase-removed":                    "removed a client's passphrase",
	"key-imported":                          "imported a key",
	"key-accepted":                          "accepted a key a client offered",
	"key-removed":                           "removed a key",
	"queue-retry":                           "tried a queued message again",
	"queue-drop":                            "dropped a queued message",
	"absence-added":                         "recorded a therapist's absence",
	"absence-cancelled":                     "cancelled a therapist's absence",
	"totp-on":                               "turned login codes on for their login",
	"totp-off":                              "turned login codes off for their login",
	"login-added":                           "added a login (configuration)",
	"login-removed":                         "removed a login (configuration)",
	"login-password-changed":                "changed a login's password (configuration)",
	"login-role-changed":                    "changed a login's role (configuration)",
	"login-codes-removed":                   "turned login codes off for a login (a lost phone)",
}

// note records a change someone made; the change stands either way, and a
// record that could not be written is in the log.
func (s *Server) note(r *http.Request, sess *session, what, object string, addresses ...string) {
	if s.o.Activity == nil {
		return
	}
	a := Activity{Time: s.o.Now(), Who: sess.user, Role: string(sess.role), What: what, Object: object, From: clientIP(r).String(), Addresses: addresses}
	if err := s.o.Activity.Record(r.Context(), a); err != nil {
		s.log.Error("console: the change was made, but its activity record could not be written", "what", what, "user", sess.user, "err", err)
	}
}

type activityRow struct {
	Activity
	Words string
}

type activityData struct {
	Days    int
	Choices []int
	Rows    []activityRow
	More    bool
	Problem string
}

// activityShown is how many changes one page lists, newest first.
const activityShown = 500

func (s *Server) activity(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.o.Activity == nil {
		s.fail(w, r, sess, http.StatusNotFound, "The activity log is not available here.")
		return
	}
	days, _ := strconv.Atoi(r.URL.Query().Get("days"))
	choices := []int{1, 7, 30, 365}
	if !slices.Contains(choices, days) {
		days = 30
	}
	d := activityData{Days: days, Choices: choices}
	list, err := s.o.Activity.Since(r.Context(), s.o.Now().AddDate(0, 0, -days))
	if err != nil {
		s.log.Error("console: activity", "err", err)
		d.Problem = "The activity log cannot be read right now; the log says why."
	}
	for i := len(list) - 1; i >= 0 && len(d.Rows) < activityShown; i-- {
		words, ok := activityWords[list[i].What]
		if !ok {
			words = list[i].What
		}
		d.Rows = append(d.Rows, activityRow{Activity: list[i], Words: words})
	}
	d.More = len(list) > activityShown
	s.render(w, r, http.StatusOK, "activity", "Activity", sess, d)
}
