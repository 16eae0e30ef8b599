package console

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

type queueData struct {
	Total int // queued in all; Rows are the oldest of them
	Rows  []QueuedMessage
	Admin bool
	Done  string
}

var queueDone = map[string]string{
	"retry":     "It is tried again now.",
	"retry-all": "Every message shown is tried again now.",
	"drop":      "The message was dropped: it will not be sent, and the archive records who dropped it.",
}

// ownQueue is what a session may see of the queue, oldest first.
func (s *Server) ownQueue(sess *session) []QueuedMessage {
	account := accountOf(sess)
	var out []QueuedMessage
	for _, m := range s.o.Queue.List() {
		if account == "" || m.Account == account {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b QueuedMessage) int { return a.Received.Compare(b.Received) })
	return out
}

// queued is the message the URL names, when the session may see it: an id
// of another therapist's message is answered as if there were none.
func (s *Server) queued(r *http.Request, sess *session) (QueuedMessage, bool) {
	id := r.PathValue("id")
	for _, m := range s.ownQueue(sess) {
		if m.ID == id {
			return m, true
		}
	}
	return QueuedMessage{}, false
}

// queueShown is how many queued messages one page lists, oldest first: a
// provider down for a day can leave tens of thousands.
const queueShown = 500

func (s *Server) queue(w http.ResponseWriter, r *http.Request, sess *session) {
	d := queueData{Rows: s.ownQueue(sess), Admin: sess.role == Admin, Done: queueDone[r.URL.Query().Get("done")]}
	d.Total = len(d.Rows)
	if len(d.Rows) > queueShown {
		d.Rows = d.Rows[:queueShown]
	}
	s.render(w, r, http.StatusOK, "queue", "Queue", sess, d)
}

func (s *Server) retry(w http.ResponseWriter, r *http.Request, sess *session) {
	m, ok := s.queued(r, sess)
	if !ok {
		s.fail(w, r, sess, http.StatusNotFound, "That message is not in your queue (it may have gone out meanwhile).")
		return
	}
	if err := s.o.Queue.Retry(m.ID); err != nil {
		s.fail(w, r, sess, http.StatusConflict, "It could not be tried again: "+err.Error())
		return
	}
	s.log.Info("console: queue retry", "user", sess.user, "id", m.ID)
	s.note(r, sess, "queue-retry", m.ID)
	http.Redirect(w, r, "/queue?done=retry", http.StatusSeeOther)
}

func (s *Server) retryAll(w http.ResponseWriter, r *http.Request, sess *session) {
	var failed []string
	for _, m := range s.ownQueue(sess) {
		if err := s.o.Queue.Retry(m.ID); err != nil {
			failed = append(failed, m.ID)
		} else {
			s.note(r, sess, "queue-retry", m.ID)
		}
	}
	s.log.Info("console: queue retry all", "user", sess.user, "failed", len(failed))
	if len(failed) > 0 {
		s.fail(w, r, sess, http.StatusConflict, "These could not be tried again (they may have gone out meanwhile): "+strings.Join(failed, ", "))
		return
	}
	http.Redirect(w, r, "/queue?done=retry-all", http.StatusSeeOther)
}

type dropData struct {
	Message QueuedMessage
	Age     time.Duration
}

// confirmDrop asks before a message is dropped: a dropped message is
// clinical mail that never reaches its recipient.
func (s *Server) confirmDrop(w http.ResponseWriter, r *http.Request, sess *session) {
	m, ok := s.queued(r, sess)
	if !ok {
		s.fail(w, r, sess, http.StatusNotFound, "That message is not in your queue (it may have gone out meanwhile).")
		return
	}
	s.render(w, r, http.StatusOK, "drop", "Drop message "+m.ID+"?", sess, dropData{Message: m})
}

func (s *Server) drop(w http.ResponseWriter, r *http.Request, sess *session) {
	m, ok := s.queued(r, sess)
	if !ok {
		s.fail(w, r, sess, http.StatusNotFound, "That message is not in your queue (it may have gone out meanwhile).")
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		http.Redirect(w, r, "/queue/"+url.PathEscape(m.ID)+"/drop", http.StatusSeeOther)
		return
	}
	if err := s.o.Queue.Drop(m.ID); err != nil {
		s.fail(w, r, sess, http.StatusConflict, "It could not be dropped: "+err.Error())
		return
	}
	s.log.Info("console: queue drop", "user", sess.user, "id", m.ID)
	s.note(r, sess, "queue-drop", m.ID)
	http.Redirect(w, r, "/queue?done=drop", http.StatusSeeOther)
}
