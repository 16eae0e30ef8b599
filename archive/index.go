package archive

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sealpost/sealpost/record"
)

// index.html is the export for a person: every message as a card (its
// recipients with what each was sent, on what basis, and what became of
// it; who the header names without having got it), the refusals and the
// consent history as tables, search and filters. It works from the folder,
// with no network and no server; without JavaScript everything is listed
// and only the search and filters are missing. The script and the style
// sheet are files of the export (index.js, index.css): the page runs no
// inline code, and its Content-Security-Policy says so.

//go:embed index.html.tmpl
var indexTemplate string

//go:embed index.css
var indexCSS []byte

//go:embed index.js
var indexJS []byte

// indexPage is what the template shows: the manifest, arranged.
type indexPage struct {
	*manifest
	Zone        string
	Cards       []indexMessage
	Rows        []indexRefusal
	Protections []string // those present, for the filter
	States      []string // delivery states present, for the filter
}

type indexMessage struct {
	*manifestMessage
	Anchor      string
	Protections string // space separated, for the filters
	States      string
	Search      string // lower-case text the search box looks in
	Recipients  []indexRecipient
	NotSent     []indexNotSent
}

type indexRecipient struct {
	*manifestRecipient
	FieldLabel string
	State      string // what became of the copy, as of the export
	Outcomes   []string
	Basis      string
}

type indexNotSent struct {
	NotSent
	FieldLabel    string
	RefusalAnchor string
}

type indexRefusal struct {
	*manifestRefusal
	Anchor        string
	MessageAnchor string
	MessageTitle  string
}

// writeIndex writes index.html, index.css and index.js, with times in loc.
func writeIndex(out string, m *manifest, loc *time.Location) error {
	tmpl, err := template.New("index").Funcs(template.FuncMap{
		"when": func(t time.Time) string { return when(t, loc) },
		"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"label": func(f string) string {
			return fieldLabel(f)
		},
	}).Parse(indexTemplate)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, newIndexPage(m, loc)); err != nil {
		return err
	}
	for name, content := range map[string][]byte{"index.html": b.Bytes(), "index.css": indexCSS, "index.js": indexJS} {
		if err := os.WriteFile(filepath.Join(out, name), content, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func newIndexPage(m *manifest, loc *time.Location) *indexPage {
	p := &indexPage{manifest: m, Zone: zoneName(loc)}
	refusalAnchor := map[string]string{} // ref and address, or ref alone -> anchor
	for i := range m.Refusals {
		r := &m.Refusals[i]
		a := fmt.Sprintf("refusal-%d", i+1)
		p.Rows = append(p.Rows, indexRefusal{manifestRefusal: r, Anchor: a})
		if r.Ref != "" {
			if _, ok := refusalAnchor[r.Ref]; !ok {
				refusalAnchor[r.Ref] = a
			}
			refusalAnchor[r.Ref+" "+strings.ToLower(r.Recipient)] = a
		}
	}
	byID := map[string]*indexMessage{}
	protections, states := map[string]bool{}, map[string]bool{}
	for i := range m.Messages {
		card := newIndexMessage(&m.Messages[i], refusalAnchor, loc)
		for _, r := range card.Recipients {
			protections[string(r.Protection)] = true
			states[r.State] = true
		}
		if len(card.NotSent) > 0 {
			states["not-sent"] = true
		}
		p.Cards = append(p.Cards, card)
	}
	for i := range p.Cards {
		byID[p.Cards[i].ID] = &p.Cards[i]
	}
	for i := range p.Rows {
		if c := byID[p.Rows[i].Message]; c != nil {
			p.Rows[i].MessageAnchor, p.Rows[i].MessageTitle = c.Anchor, c.Subject
		}
	}
	p.Protections, p.States = sortedKeys(protections), sortedKeys(states)
	return p
}

func newIndexMessage(mm *manifestMessage, refusalAnchor map[string]string, loc *time.Location) indexMessage {
	card := indexMessage{manifestMessage: mm, Anchor: "msg-" + safeName(mm.ID)}
	search := []string{mm.ID, mm.From, mm.Sender, mm.Subject, mm.MessageID, mm.Account, mm.Folder, mm.File}
	var prot, states []string
	for i := range mm.Recipients {
		r := &mm.Recipients[i]
		ir := indexRecipient{manifestRecipient: r, FieldLabel: fieldLabel(r.Field), Basis: basisText(r, loc)}
		ir.State, ir.Outcomes = outcomes(r.Delivery, loc)
		card.Recipients = append(card.Recipients, ir)
		prot = append(prot, string(r.Protection))
		states = append(states, ir.State)
		search = append(search, r.Address)
	}
	for _, n := range mm.NotSentTo {
		ns := indexNotSent{NotSent: n, FieldLabel: fieldLabel(n.Field)}
		if n.Ref != "" {
			if a, ok := refusalAnchor[n.Ref+" "+strings.ToLower(n.Address)]; ok {
				ns.RefusalAnchor = a
			} else {
				ns.RefusalAnchor = refusalAnchor[n.Ref]
			}
		}
		card.NotSent = append(card.NotSent, ns)
		search = append(search, n.Address, n.Ref)
	}
	if len(card.NotSent) > 0 {
		states = append(states, "not-sent")
	}
	card.Protections, card.States = strings.Join(prot, " "), strings.Join(states, " ")
	card.Search = strings.ToLower(strings.Join(search, " "))
	return card
}

// outcomes says what became of one recipient's copy: its state now (the
// newest event's kind, "pending" with none) and one line per event, in
// order, each run of deferrals (one per retry) folded into one line.
func outcomes(ds []manifestDelivery, loc *time.Location) (string, []string) {
	if len(ds) == 0 {
		return "pending", []string{"pending: no outcome recorded yet"}
	}
	var lines []string
	var run []manifestDelivery
	flush := func() {
		if n := len(run); n == 1 {
			lines = append(lines, fmt.Sprintf("deferred %s%s", when(run[0].Time, loc), colonText(run[0].Reply)))
		} else if n > 1 {
			lines = append(lines, fmt.Sprintf("deferred %d times, the last %s%s", n, when(run[n-1].Time, loc), colonText(run[n-1].Reply)))
		}
		run = nil
	}
	for _, d := range ds {
		if d.Status == Deferred {
			run = append(run, d)
			continue
		}
		flush()
		lines = append(lines, fmt.Sprintf("%s %s%s", d.Status, when(d.Time, loc), colonText(d.Reply)))
	}
	flush()
	return string(ds[len(ds)-1].Status), lines
}

// basisText says what a recipient's decision rested on.
func basisText(r *manifestRecipient, loc *time.Location) string {
	var parts []string
	if c := r.Consent; c != nil {
		switch c.Kind {
		case record.PassphraseSet:
			parts = append(parts, fmt.Sprintf("passphrase set %s (event %d)", when(c.Recorded, loc), c.ID))
		default:
			s := fmt.Sprintf("signed %s: %s (event %d)", c.Date, c.Evidence, c.ID)
			if c.Kind != "" && c.Kind != record.ConsentGiven {
				s = c.Kind + ", " + s
			}
			if c.Expires != "" {
				s += ", expires " + c.Expires
			}
			parts = append(parts, s)
		}
		if c.Client != "" {
			parts = append(parts, "client "+c.Client)
		}
	}
	if r.KeyFingerprint != "" {
		parts = append(parts, "key "+r.KeyFingerprint)
	}
	if r.SealedPDFSHA256 != "" {
		parts = append(parts, fmt.Sprintf("PDF sent: %d octets, SHA-256 %s", r.SealedPDFSize, r.SealedPDFSHA256))
	}
	if len(parts) == 0 {
		return r.Reason
	}
	return strings.Join(parts, "; ")
}

// when is a time to the second in loc, with the zone's name and its offset
// from UTC, as a reader of the page needs it.
func when(t time.Time, loc *time.Location) string {
	t = t.In(loc)
	name, off := t.Zone()
	offset := t.Format("-07:00")
	switch {
	case off == 0 && (name == "UTC" || name == "GMT" || name == ""):
		return t.Format("2006-01-02 15:04:05") + " UTC"
	case name == "" || name[0] == '+' || name[0] == '-':
		return t.Format("2006-01-02 15:04:05") + " UTC" + offset
	}
	return t.Format("2006-01-02 15:04:05") + " " + name + " (UTC" + offset + ")"
}

// zoneName names the zone times are shown in.
func zoneName(loc *time.Location) string {
	if n := loc.String(); n != "Local" && n != "" {
		return n
	}
	name, _ := time.Now().In(loc).Zone()
	return "the exporting computer's time zone (" + name + ")"
}

func fieldLabel(f string) string {
	switch f {
	case "to":
		return "To"
	case "cc":
		return "Cc"
	case "bcc":
		return "Bcc"
	}
	return "—"
}

func colonText(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
