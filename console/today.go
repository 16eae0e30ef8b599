package console

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/status"
)

// todayData is the Today page: what `sealpost status` shows, scoped to
// the role. A therapist sees their own queue and refusals and whether mail
// is moving; an auditor the record's health; an admin everything.
type todayData struct {
	Role          Role
	Relay         string // running since ..., or not running
	Queue         string
	Refusals      string
	RefusalsLink  bool
	Provider      string
	Expiries      []expiryRow // admin
	Archive       string      // admin, auditor
	Record        string      // admin, auditor: today's messages in the record
	ChainHead     string      // admin, auditor
	Disk          string      // admin
	Warnings      []string
	Build         string
	CheckedAtText string
}

type expiryRow struct{ What, Text string }

func (s *Server) today(w http.ResponseWriter, r *http.Request, sess *session) {
	now := s.o.Now()
	st := s.o.Status.Status(r.Context())
	d := todayData{Role: sess.role, Build: st.Build.String(), CheckedAtText: now.Local().Format("2006-01-02 15:04:05")}
	d.Relay = "not running"
	if st.Relay != nil {
		d.Relay = fmt.Sprintf("running since %s (%s)", status.Stamp(st.Relay.Since), status.Ago(now, st.Relay.Since))
	}
	d.Provider = providerText(st, now)
	account := ""
	if sess.role == Therapist {
		account = sess.user
	}
	d.Queue = s.queueSummary(account, st, now)
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	sum, sumErr := s.daySummary(r, midnight)
	if n, err := s.refusedToday(r, midnight, account, sum, sumErr); err == nil {
		d.Refusals = plural(n, "recipient or message", "recipients or messages") + " refused today"
		d.RefusalsLink = n > 0 && sess.role != Auditor
	} else {
		d.Refusals = "unknown: the archive's refusals cannot be read"
	}
	switch sess.role {
	case Admin:
		for _, l := range append(st.Certificates, st.Keys...) {
			d.Expiries = append(d.Expiries, expiryRow{l.What, status.ExpiryText(l, now)})
		}
		if st.Disk != nil {
			d.Disk = fmt.Sprintf("%s free of %s (%s)", status.Bytes(st.Disk.Free), status.Bytes(st.Disk.Total), st.Disk.Path)
		}
		d.Warnings = st.Warnings
		fallthrough
	case Auditor:
		d.Archive = st.VerifiedText(now)
		if s.o.Archive != nil {
			if sumErr == nil {
				d.Record = fmt.Sprintf("%s sent, %s received, %s to the provider, %s, %s",
					plural(sum.Sent, "message", "messages"), plural(sum.Received, "client's message", "clients' messages"),
					plural(sum.Delivered, "delivery", "deliveries"), plural(sum.Bounced, "bounce", "bounces"), plural(sum.Refused, "refusal", "refusals"))
			}
		}
		if v := st.Verified; v != nil {
			d.ChainHead = fmt.Sprintf("#%d %s", v.HeadSeq, v.Head)
		}
		if sess.role == Auditor {
			for _, wline := range st.Warnings {
				if strings.Contains(strings.ToLower(wline), "archive") {
					d.Warnings = append(d.Warnings, wline)
				}
			}
		}
	case Therapist:
		d.Warnings = s.therapistWarnings(account, st, now)
	}
	s.render(w, r, http.StatusOK, "today", "Today", sess, d)
}

// daySummary counts the record since midnight; without an archive source
// it is an error, and the refusals are counted from their list.
func (s *Server) daySummary(r *http.Request, midnight time.Time) (Summary, error) {
	if s.o.Archive == nil {
		return Summary{}, errNoArchive
	}
	return s.o.Archive.Summary(r.Context(), midnight)
}

var errNoArchive = errors.New("no archive source")

// refusedToday is how many refusals of the account ("" all) today holds:
// from the day's counts, which the archive's index gives, or else from the
// list of today's refusals.
func (s *Server) refusedToday(r *http.Request, midnight time.Time, account string, sum Summary, sumErr error) (int, error) {
	if sumErr == nil && sum.RefusedBy != nil {
		if account == "" {
			return sum.Refused, nil
		}
		return sum.RefusedBy[account], nil
	}
	refused, err := s.o.Refusals.Refusals(r.Context(), midnight)
	if err != nil {
		return 0, err
	}
	return len(scopeRefusals(refused, account)), nil
}

func providerText(st *status.Report, now time.Time) string {
	switch {
	case st.Provider == "outbox":
		return "none: mail is delivered into the outbox folder (a test setup)"
	case st.Relay == nil:
		return "not known while the relay is stopped"
	case st.Relay.ProviderLastOK.IsZero():
		return "not reached since the relay started"
	}
	return fmt.Sprintf("last reached %s (%s ago)", status.Stamp(st.Relay.ProviderLastOK), status.Ago(now, st.Relay.ProviderLastOK))
}

// queueSummary is the queue's length and oldest message: the whole queue's
// from the status, or one account's from the queue itself.
func (s *Server) queueSummary(account string, st *status.Report, now time.Time) string {
	q := st.Queue
	if account != "" {
		q = status.Queue{}
		for _, m := range s.o.Queue.List() {
			if m.Account == account {
				q.Messages++
				if q.Oldest.IsZero() || m.Received.Before(q.Oldest) {
					q.Oldest = m.Received
				}
			}
		}
	}
	if q.Messages == 0 {
		return "empty: everything sent has gone out"
	}
	return fmt.Sprintf("%s waiting, the oldest for %s", plural(q.Messages, "message", "messages"), status.Ago(now, q.Oldest))
}

// therapistWarnings are what a therapist can act on or should know.
func (s *Server) therapistWarnings(account string, st *status.Report, now time.Time) []string {
	var out []string
	for _, m := range s.o.Queue.List() {
		if m.Account == account && now.Sub(m.Received) > time.Hour {
			out = append(out, "A message of yours has waited over an hour: the Queue page says what the provider answered. It is kept and tried again; nothing needs sending twice.")
			break
		}
	}
	if st.Relay != nil && st.Provider != "outbox" && now.Sub(st.Relay.ProviderLastOK) > status.ProviderQuiet {
		out = append(out, "The mail provider has not been reached in the last 10 minutes: your messages wait safely in the queue and go out once it answers. Your admin has been told on their page.")
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
