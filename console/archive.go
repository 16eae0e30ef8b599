package console

import (
	"net/http"
	"strings"
	"time"
)

type archiveData struct {
	Now      time.Time
	Verified string
	State    ArchiveState
	Problem  string
	// A client's timeline, when one was asked for.
	Client   string
	Timeline []TimelineEntry
	More     bool
	Asked    bool
	Admin    bool
	// A prune's dry run, when one was asked for.
	Pruned     bool
	WouldPrune []string
	Kept       string
}

// timelineShown is how many of a client's records the page lists.
const timelineShown = 1000

// archivePage is the record's state for admins and auditors: the chain's
// head to write down, the relay's last verification, the legal holds.
func (s *Server) archivePage(w http.ResponseWriter, r *http.Request, sess *session) {
	s.showArchive(w, r, sess, archiveData{})
}

// timeline shows a client's records from the clear headers. The address
// comes in a form, not the URL: it stays out of the browser's history.
func (s *Server) timeline(w http.ResponseWriter, r *http.Request, sess *session) {
	d := archiveData{Client: strings.TrimSpace(r.PostFormValue("client")), Asked: true}
	if s.o.Archive != nil && d.Client != "" {
		var err error
		if d.Timeline, d.More, err = s.o.Archive.Timeline(r.Context(), d.Client, timelineShown); err != nil {
			s.log.Error("console: timeline", "err", err)
			d.Problem = "The client's records cannot be read right now; the log says why."
		}
	}
	s.showArchive(w, r, sess, d)
}

// pruneCheck runs a prune's dry run: nothing is removed.
func (s *Server) pruneCheck(w http.ResponseWriter, r *http.Request, sess *session) {
	d := archiveData{Pruned: true}
	if s.o.Archive != nil {
		var err error
		if d.WouldPrune, d.Kept, err = s.o.Archive.PruneDryRun(r.Context()); err != nil {
			d.Pruned, d.Problem = false, "The dry run did not finish: "+err.Error()
		}
	}
	s.showArchive(w, r, sess, d)
}

func (s *Server) showArchive(w http.ResponseWriter, r *http.Request, sess *session, d archiveData) {
	if s.o.Archive == nil {
		s.fail(w, r, sess, http.StatusNotFound, "The archive's state is not available here.")
		return
	}
	d.Admin = sess.role == Admin
	now := s.o.Now()
	d.Now, d.Verified = now, s.o.Status.Status(r.Context()).VerifiedText(now)
	var err error
	if d.State, err = s.o.Archive.State(r.Context()); err != nil {
		s.log.Error("console: archive", "err", err)
		d.Problem = "The archive's state cannot be read right now; the log says why."
	}
	s.render(w, r, http.StatusOK, "archive", "Archive", sess, d)
}
