package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/status"
)

//go:embed templates
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pages are the console's templates, each parsed with the layout.
type pages struct{ byName map[string]*template.Template }

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		// With the zone: the server's clock may not be the reader's.
		return t.Local().Format("2006-01-02 15:04 MST")
	},
	"iso":     func(t time.Time) string { return t.Format(time.RFC3339) },
	"bytes":   func(n int64) string { return status.Bytes(uint64(max(n, 0))) },
	"groups4": groupsOfFour,
	"capital": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
}

func loadPages() (*pages, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	p := &pages{byName: map[string]*template.Template{}}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

// navItem is a link of the menu.
type navItem struct {
	Href, Label string
	Current     bool
}

// view is what every page's template gets.
type view struct {
	Title string
	User  string
	Role  Role
	CSRF  string
	Full  bool // logged in fully: not waiting for a code or a set-up
	Nav   []navItem
	Data  any
}

// menu are the pages a role may open, from the route table.
func (s *Server) menu(role Role, path string) []navItem {
	items := []navItem{{"/today", "Today", false}, {"/refusals", "Refused recipients", false}, {"/queue", "Queue", false}, {"/absences", "Absences", false}, {"/clients", "Clients", false}, {"/keys", "Keys", false}, {"/archive", "Archive", false}, {"/activity", "Activity", false}}
	var out []navItem
	for _, it := range items {
		for _, rt := range s.table() {
			if rt.pattern == "GET "+it.Href && slices.Contains(rt.roles, role) {
				it.Current = path == it.Href || strings.HasPrefix(path, it.Href+"/")
				out = append(out, it)
			}
		}
	}
	return out
}

// render writes a page; the template runs into a buffer first, so a
// failure half-way shows an error page rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name, title string, sess *session, data any) {
	v := view{Title: title, Data: data}
	if sess != nil {
		v.User, v.Role, v.CSRF, v.Full = sess.user, sess.role, sess.csrf, sess.stage == stageFull
		if v.Full {
			v.Nav = s.menu(sess.role, r.URL.Path)
		}
	}
	var b bytes.Buffer
	if err := s.pages.byName[name].Execute(&b, v); err != nil {
		s.log.Error("console page failed", "page", name, "err", err)
		http.Error(w, "The page could not be shown; the log says why.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// fail shows a page that says what went wrong, in the layout.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *session, code int, msg string) {
	s.render(w, r, code, "problem", http.StatusText(code), sess, msg)
}

// groupsOfFour writes a fingerprint as people compare it aloud:
// "ABCD 1234 ...".
func groupsOfFour(fpr string) string {
	var b strings.Builder
	for i, c := range strings.ToUpper(strings.ReplaceAll(fpr, " ", "")) {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}
