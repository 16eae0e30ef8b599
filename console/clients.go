package console

import (
	"net/http"
	"slices"
	"strings"

	"github.com/sealpost/sealpost/record"
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

type clientData struct {
	Client  Client
	History []record.ConsentEvent
	Keys    []Key
}

// client is one client's page: what a message would get now and why,
// their consent and passphrase history, their keys.
func (s *Server) client(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.o.Clients == nil {
		s.fail(w, r, sess, http.StatusNotFound, "The client list is not available here.")
		return
	}
	address := r.PathValue("address")
	c, history, ok, err := s.o.Clients.Client(r.Context(), address)
	if err != nil {
		s.log.Error("console: client", "err", err)
	}
	if !ok {
		s.fail(w, r, sess, http.StatusNotFound, "No client with this address is on file.")
		return
	}
	d := clientData{Client: c, History: history}
	if s.o.Keys != nil {
		keys, _ := s.o.Keys.Keys(r.Context())
		for _, k := range keys {
			if slices.ContainsFunc(k.UserIDs, func(u string) bool { return strings.Contains(strings.ToLower(u), strings.ToLower(c.Address)) }) {
				d.Keys = append(d.Keys, k)
			}
		}
	}
	s.render(w, r, http.StatusOK, "client", c.Address, sess, d)
}
