package console

import (
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/record"
)

// scanTypes are the types a scan of a signed form may have, by its
// content: what the browser claims is not believed.
var scanTypes = []string{"application/pdf", "image/jpeg", "image/png"}

// sniffScan says what a scan is, from its first bytes.
func sniffScan(data []byte) (string, bool) {
	t := http.DetectContentType(data)
	for _, ok := range scanTypes {
		if t == ok {
			return t, true
		}
	}
	return t, false
}

// readScan is the uploaded scan of the form "scan", or nil when none was
// chosen.
func readScan(r *http.Request) (*Evidence, error) {
	f, h, err := r.FormFile("scan")
	if errors.Is(err, http.ErrMissingFile) || errors.Is(err, http.ErrNotMultipart) {
		return nil, nil
	}
	if err != nil {
		return nil, errors.New("the scan could not be read; choose it again")
	}
	defer f.Close()
	if h.Size == 0 {
		return nil, nil
	}
	if h.Size > maxUpload {
		return nil, errors.New("the scan is larger than 10 MB: scan it at a lower resolution, or as a PDF")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxUpload+1))
	if err != nil || len(data) > maxUpload {
		return nil, errors.New("the scan could not be read, or is larger than 10 MB")
	}
	t, ok := sniffScan(data)
	if !ok {
		return nil, errors.New("the scan is not a PDF, JPEG or PNG file (it looks like " + t + ")")
	}
	return &Evidence{Filename: cleanFilename(h), Type: t, Data: data}, nil
}

// cleanFilename is the upload's own name, without folders or control
// characters, for the record only.
func cleanFilename(h *multipart.FileHeader) string {
	name := path.Base(strings.ReplaceAll(h.Filename, `\`, "/"))
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, name)
	if len(name) > 100 {
		name = name[:100]
	}
	return name
}

// fixTarget is the refusal a fix form is for and the recipient's address,
// which must be the one refused: the archive keeps it as a keyed hash, so
// a typing error is caught before anything is recorded for the wrong
// person. ok false: the answer has been written.
func (s *Server) fixTarget(w http.ResponseWriter, r *http.Request, sess *session, form fixForm) (string, bool) {
	ref, rows, found := s.findRefusal(r, sess)
	if !found || s.o.Recorder == nil {
		s.fail(w, r, sess, http.StatusNotFound, "No refusal with this reference can be fixed here.")
		return "", false
	}
	address, err := addr.Normalize(strings.TrimSpace(form.Address))
	if err != nil {
		s.showRefusal(w, r, sess, http.StatusUnprocessableEntity, ref, rows, refusalData{Form: form,
			Problem: "The recipient's address is not an address (" + err.Error() + "). Copy it from the therapist's error message."})
		return "", false
	}
	for _, row := range rows {
		if row.Fixable && row.Is != nil && row.Is(address) {
			return address, true
		}
	}
	s.showRefusal(w, r, sess, http.StatusUnprocessableEntity, ref, rows, refusalData{Form: form,
		Problem: "<" + address + "> is not the recipient refused under " + ref + ". Check the address in the therapist's error message; nothing was recorded."})
	return "", false
}

// recordedBy names the admin in the record: their login, and where.
func recordedBy(sess *session) string { return sess.user + " (console)" }

func formOf(r *http.Request) fixForm {
	return fixForm{Address: r.PostFormValue("address"), Client: r.PostFormValue("client"), Evidence: r.PostFormValue("evidence"),
		Signed: r.PostFormValue("signed"), Expires: r.PostFormValue("expires"), Key: r.PostFormValue("key")}
}

func (s *Server) refuseForm(w http.ResponseWriter, r *http.Request, sess *session, form fixForm, problem string) {
	ref, rows, _ := s.findRefusal(r, sess)
	s.showRefusal(w, r, sess, http.StatusUnprocessableEntity, ref, rows, refusalData{Form: form, Problem: problem})
}

func (s *Server) recordConsent(w http.ResponseWriter, r *http.Request, sess *session) {
	form := formOf(r)
	address, ok := s.fixTarget(w, r, sess, form)
	if !ok {
		return
	}
	if strings.TrimSpace(form.Evidence) == "" {
		s.refuseForm(w, r, sess, form, "Say which form the client signed and where the signed copy is kept.")
		return
	}
	for _, d := range []string{form.Signed, form.Expires} {
		if _, err := time.Parse(time.DateOnly, d); d != "" && err != nil {
			s.refuseForm(w, r, sess, form, "Dates are YYYY-MM-DD, e.g. "+s.o.Now().Format(time.DateOnly)+".")
			return
		}
	}
	scan, err := readScan(r)
	if err != nil {
		s.refuseForm(w, r, sess, form, "The scan was not taken: "+err.Error()+". Nothing was recorded.")
		return
	}
	ev := record.ConsentEvent{Client: strings.TrimSpace(form.Client), Addresses: []string{address}, Signed: form.Signed,
		Evidence: strings.TrimSpace(form.Evidence), Expires: form.Expires, RecordedBy: recordedBy(sess)}
	ev, err = s.o.Recorder.RecordConsent(r.Context(), ev, scan)
	if err != nil {
		s.log.Warn("console: consent not recorded", "user", sess.user, "err", err)
		s.refuseForm(w, r, sess, form, "The consent was not recorded: "+err.Error())
		return
	}
	s.log.Info("console: consent recorded", "user", sess.user, "consent", ev.ID, "scan", scan != nil)
	s.note(r, sess, "consent-recorded", strconv.FormatInt(ev.ID, 10), address)
	s.done(w, r, "consent")
}

func (s *Server) importKey(w http.ResponseWriter, r *http.Request, sess *session) {
	form := formOf(r)
	address, ok := s.fixTarget(w, r, sess, form)
	if !ok {
		return
	}
	data := []byte(form.Key)
	if f, _, err := r.FormFile("keyfile"); err == nil {
		data, err = io.ReadAll(io.LimitReader(f, maxUpload))
		f.Close()
		if err != nil {
			s.refuseForm(w, r, sess, form, "The key file could not be read; choose it again.")
			return
		}
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		s.refuseForm(w, r, sess, form, "Paste the recipient's public key, or choose its file (.asc).")
		return
	}
	keys, err := s.o.Recorder.ImportKey(r.Context(), data, recordedBy(sess))
	if err != nil {
		s.refuseForm(w, r, sess, form, "The key was not imported: "+err.Error())
		return
	}
	for _, k := range keys {
		for _, uid := range k.UserIDs {
			if strings.Contains(strings.ToLower(uid), address) && k.Status == "usable" {
				s.log.Info("console: key imported", "user", sess.user, "fingerprint", k.Fingerprint)
				s.note(r, sess, "key-imported", k.Fingerprint, address)
				s.done(w, r, "key")
				return
			}
		}
	}
	form.Key = ""
	s.refuseForm(w, r, sess, form, "The key was imported, but it is not a usable key for <"+address+">: none of its user IDs names that address, or it expired or was revoked. Mail to them stays refused; ask them for their current key.")
}

func (s *Server) setPassphrase(w http.ResponseWriter, r *http.Request, sess *session) {
	form := formOf(r)
	address, ok := s.fixTarget(w, r, sess, form)
	if !ok {
		return
	}
	p, again := r.PostFormValue("passphrase"), r.PostFormValue("passphrase_again")
	if p != again {
		s.refuseForm(w, r, sess, form, "The two passphrases differ; type it twice the same.")
		return
	}
	ev, err := s.o.Recorder.SetPassphrase(r.Context(), address, strings.TrimSpace(form.Client), p, recordedBy(sess))
	if err != nil {
		s.refuseForm(w, r, sess, form, "The passphrase was not recorded: "+err.Error())
		return
	}
	s.log.Info("console: passphrase set", "user", sess.user, "consent", ev.ID)
	s.note(r, sess, "passphrase-set", strconv.FormatInt(ev.ID, 10), address)
	s.done(w, r, "passphrase")
}

// done sends the browser back to the refusal's page, which says what was
// recorded (post, redirect, get: a reload does not record twice).
func (s *Server) done(w http.ResponseWriter, r *http.Request, what string) {
	http.Redirect(w, r, "/refusals/"+url.PathEscape(r.PathValue("ref"))+"?done="+what, http.StatusSeeOther)
}
