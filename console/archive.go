package console

import (
	"net/http"
	"time"
)

type archiveData struct {
	Now      time.Time
	Verified string
	State    ArchiveState
	Problem  string
}

// archivePage is the record's state for admins and auditors: the chain's
// head to write down, the relay's last verification, the legal holds.
func (s *Server) archivePage(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.o.Archive == nil {
		s.fail(w, r, sess, http.StatusNotFound, "The archive's state is not available here.")
		return
	}
	now := s.o.Now()
	d := archiveData{Now: now, Verified: s.o.Status.Status(r.Context()).VerifiedText(now)}
	var err error
	if d.State, err = s.o.Archive.State(r.Context()); err != nil {
		s.log.Error("console: archive", "err", err)
		d.Problem = "The archive's state cannot be read right now; the log says why."
	}
	s.render(w, r, http.StatusOK, "archive", "Archive", sess, d)
}
