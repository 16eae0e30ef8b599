package console

import (
	"net/http"
	"strings"
)

// clientsPerPage is one screen of clients: the page costs the same with
// a hundred clients on file or a hundred thousand.
const clientsPerPage = 50

// expiringShown are the consents about to end listed above the clients:
// the soonest, a list a person reads and acts on today.
const expiringShown = 20

type clientsData struct {
	Query    string
	After    string
	Rows     []Client
	Next     string
	Expiring []Client
	MoreEnd  bool // more consents end within 30 days than are listed
	Problem  string
}

func (s *Server) clients(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.o.Clients == nil {
		s.fail(w, r, sess, http.StatusNotFound, "The client list is not available here.")
		return
	}
	q := r.URL.Query()
	d := clientsData{Query: strings.TrimSpace(q.Get("q")), After: q.Get("after")}
	if len(d.Query) > 200 {
		d.Query = d.Query[:200]
	}
	var err error
	d.Rows, d.Next, err = s.o.Clients.SearchClients(r.Context(), d.Query, d.After, clientsPerPage)
	if err != nil {
		s.log.Error("console: clients", "err", err)
		d.Problem = "The consent registry cannot be read right now; the log says why."
	}
	if d.Query == "" && d.After == "" {
		if d.Expiring, d.MoreEnd, err = s.o.Clients.ExpiringConsents(r.Context(), 30, expiringShown); err != nil {
			s.log.Error("console: expiring consents", "err", err)
		}
	}
	s.render(w, r, http.StatusOK, "clients", "Clients", sess, d)
}
