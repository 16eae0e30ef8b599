package console

import (
	"io"
	"net/http"
	"slices"
	"strings"
)

type keysData struct {
	Query    string
	Proposed []Key
	Keys     []Key
	Done     string
	Problem  string
}

var keysDone = map[string]string{
	"import": "The key is in the keyring: mail to its addresses goes encrypted from now on.",
	"accept": "The key is accepted: mail to its addresses goes encrypted to it from now on.",
	"remove": "The key was removed: mail to its addresses is decided without it from now on.",
}

func (s *Server) keys(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.o.Keys == nil {
		s.fail(w, r, sess, http.StatusNotFound, "The keyring is not available here.")
		return
	}
	d := keysData{Query: strings.ToLower(strings.TrimSpace(r.URL.Query().Get("q"))), Done: keysDone[r.URL.Query().Get("done")]}
	s.showKeys(w, r, sess, http.StatusOK, d)
}

func (s *Server) showKeys(w http.ResponseWriter, r *http.Request, sess *session, code int, d keysData) {
	all, err := s.o.Keys.Keys(r.Context())
	if err != nil {
		s.log.Error("console: keys", "err", err)
		d.Problem = "The keyring cannot be read right now; the log says why."
	}
	for _, k := range all {
		if d.Query != "" && !slices.ContainsFunc(k.UserIDs, func(u string) bool { return strings.Contains(strings.ToLower(u), d.Query) }) &&
			!strings.Contains(strings.ToLower(k.Fingerprint), strings.ReplaceAll(d.Query, " ", "")) {
			continue
		}
		if k.Status == "proposed" {
			d.Proposed = append(d.Proposed, k)
		} else {
			d.Keys = append(d.Keys, k)
		}
	}
	s.render(w, r, code, "keys", "Keys", sess, d)
}

func (s *Server) importKeys(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.o.Keys == nil {
		s.fail(w, r, sess, http.StatusNotFound, "The keyring is not available here.")
		return
	}
	data := []byte(r.PostFormValue("key"))
	if f, _, err := r.FormFile("keyfile"); err == nil {
		data, err = io.ReadAll(io.LimitReader(f, maxUpload))
		f.Close()
		if err != nil {
			s.showKeys(w, r, sess, http.StatusUnprocessableEntity, keysData{Problem: "The key file could not be read; choose it again."})
			return
		}
	}
	if strings.TrimSpace(string(data)) == "" {
		s.showKeys(w, r, sess, http.StatusUnprocessableEntity, keysData{Problem: "Paste a public key, or choose its file (.asc)."})
		return
	}
	keys, err := s.o.Keys.Import(r.Context(), data, recordedBy(sess))
	if err != nil {
		s.showKeys(w, r, sess, http.StatusUnprocessableEntity, keysData{Problem: "Nothing was imported: " + err.Error()})
		return
	}
	for _, k := range keys {
		s.log.Info("console: key imported", "user", sess.user, "fingerprint", k.Fingerprint)
		s.note(r, sess, "key-imported", k.Fingerprint)
	}
	http.Redirect(w, r, "/keys?done=import", http.StatusSeeOther)
}

// keyNamed is the key in the URL; ok false when the keyring has none.
func (s *Server) keyNamed(r *http.Request) (Key, bool) {
	if s.o.Keys == nil {
		return Key{}, false
	}
	fpr := strings.ToUpper(r.PathValue("fpr"))
	all, err := s.o.Keys.Keys(r.Context())
	if err != nil {
		return Key{}, false
	}
	i := slices.IndexFunc(all, func(k Key) bool { return k.Fingerprint == fpr })
	if i < 0 {
		return Key{}, false
	}
	return all[i], true
}

type keyConfirmData struct {
	Key    Key
	Action string // accept or remove
}

// confirmKey asks before a key is accepted (after comparing its
// fingerprint with the client) or removed.
func (s *Server) confirmKey(w http.ResponseWriter, r *http.Request, sess *session) {
	key, ok := s.keyNamed(r)
	if !ok {
		s.fail(w, r, sess, http.StatusNotFound, "There is no such key in the keyring.")
		return
	}
	action := "remove"
	title := "Remove this key?"
	if strings.HasSuffix(r.URL.Path, "/accept") {
		action, title = "accept", "Accept this key?"
		if key.Status != "proposed" {
			s.fail(w, r, sess, http.StatusConflict, "This key is not waiting to be accepted.")
			return
		}
	}
	s.render(w, r, http.StatusOK, "keyconfirm", title, sess, keyConfirmData{Key: key, Action: action})
}

func (s *Server) changeKey(w http.ResponseWriter, r *http.Request, sess *session) {
	key, ok := s.keyNamed(r)
	if !ok {
		s.fail(w, r, sess, http.StatusNotFound, "There is no such key in the keyring.")
		return
	}
	accept := strings.HasSuffix(r.URL.Path, "/accept")
	if r.PostFormValue("confirm") != "yes" {
		http.Redirect(w, r, r.URL.Path, http.StatusSeeOther)
		return
	}
	var err error
	done := "remove"
	if accept {
		done = "accept"
		err = s.o.Keys.Accept(r.Context(), key.Fingerprint, recordedBy(sess))
	} else {
		err = s.o.Keys.Remove(r.Context(), key.Fingerprint, recordedBy(sess))
	}
	if err != nil {
		s.fail(w, r, sess, http.StatusConflict, "The keyring did not take the change: "+err.Error())
		return
	}
	s.log.Info("console: key "+done, "user", sess.user, "fingerprint", key.Fingerprint)
	what := "key-removed"
	if accept {
		what = "key-accepted"
	}
	s.note(r, sess, what, key.Fingerprint)
	http.Redirect(w, r, "/keys?done="+done, http.StatusSeeOther)
}
