package rules

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"strings"
	"time"

	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules/sealed"
)

// SealedSettings are the [sealed] texts of the message a sealed recipient
// receives around the PDF.
type SealedSettings struct {
	PracticeName string
	Subject      string // the outer Subject: the real one is only inside the PDF
	// Text is the outer body: how to open the PDF, that the passphrase is
	// the one agreed at intake, how to reply. Crisis follows it.
	Text   string
	Crisis string
	// MaxBytes bounds the message a sealed recipient receives; a larger
	// one is refused at DATA.
	MaxBytes int64
}

// sealedTexts are the settings as Seal takes them.
type sealedTexts struct {
	SealedSettings
	body, html string
}

// Sealer writes the message a sealed recipient receives (sealed.Seal).
type Sealer func(w io.Writer, msg io.Reader, o sealed.Options) (sealed.Result, error)

// CheckSealed returns what is wrong with the [sealed] settings, by key.
func CheckSealed(s SealedSettings) []SettingProblem {
	var problems []SettingProblem
	bad := func(key, msg string) { problems = append(problems, SettingProblem{Key: key, Msg: msg}) }
	if strings.TrimSpace(s.PracticeName) == "" {
		bad("practice_name", "must name the practice: the client reads it on the message and the card")
	}
	if strings.TrimSpace(s.Subject) == "" || strings.ContainsAny(s.Subject, "\r\n") {
		bad("subject", "must be one line: the subject every sealed message travels under")
	}
	if strings.TrimSpace(s.Text) == "" {
		bad("text", "must say how to open the PDF, that the passphrase is the one agreed at intake, and how to reply")
	}
	if s.MaxBytes < 1024 {
		bad("max_bytes", "must be at least 1024")
	}
	return problems
}

// SetSealed replaces the [sealed] settings; messages in progress finish
// with those they started with.
func (p *Policy) SetSealed(s SealedSettings) error {
	if problems := CheckSealed(s); len(problems) > 0 {
		return fmt.Errorf("policy: sealed.%s", problems[0])
	}
	body := strings.TrimSpace(strings.ReplaceAll(s.Text, "\r\n", "\n"))
	if c := strings.TrimSpace(strings.ReplaceAll(s.Crisis, "\r\n", "\n")); c != "" {
		body += "\n\n" + c
	}
	p.sealed.Store(&sealedTexts{SealedSettings: s, body: body, html: textToHTML(body)})
	return nil
}

// textToHTML is the HTML form of the outer body: escaped, a paragraph per
// block of lines, line breaks kept.
func textToHTML(text string) string {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n")
	for _, para := range strings.Split(text, "\n\n") {
		if para = strings.TrimSpace(para); para == "" {
			continue
		}
		b.WriteString("<p>" + strings.ReplaceAll(html.EscapeString(para), "\n", "<br>\n") + "</p>\n")
	}
	b.WriteString("</body></html>\n")
	return b.String()
}

// SealedCopyName names the nth sealed copy of a message, from 1.
func SealedCopyName(n int) string { return fmt.Sprintf("sealed-%d", n) }

// sealJob is a sealed copy Prepare named, for EncryptCopies.
type sealJob struct {
	name     string
	decision int   // its recipient's index in Result.Decisions
	eventID  int64 // the passphrase-set event decided on at RCPT
}

// sealedDecision is the decision for a client with a passphrase on file.
func sealedDecision(d record.Decision, set *record.ConsentEvent, now time.Time) record.Decision {
	ev := *set
	d.Protection, d.Consent = record.Sealed, &ev
	d.Reason = fmt.Sprintf("sealed PDF, opened with the client's passphrase set on %s (registry event %d)",
		ev.RecordedAt.In(now.Location()).Format(dateLayout), ev.ID)
	return d
}

// sealCopies writes every sealed copy Prepare named, from the plain copy,
// each with its recipient's passphrase as the registry holds it now.
func (p *Policy) sealCopies(ctx context.Context, out Sink, res *Result) error {
	if len(res.toSeal) == 0 {
		return nil
	}
	texts := p.sealed.Load()
	if texts == nil {
		return fmt.Errorf("policy: %w: a sealed recipient but no [sealed] settings", ErrUnavailable)
	}
	notice := p.cfg.Load().noticeRaw
	for _, j := range res.toSeal {
		d := &res.Decisions[j.decision]
		secret, set, err := p.registry.Passphrase(ctx, d.Address)
		if err != nil {
			return fmt.Errorf("seal copy: %w", err)
		}
		if set == nil || set.ID != j.eventID {
			why, err := p.RecheckSealed(ctx, d.Address, j.eventID, p.now())
			if err != nil {
				return fmt.Errorf("seal copy: %w", err)
			}
			if why == "" {
				why = "the passphrase changed"
			}
			return &Refusal{Recipient: true, Code: RefusalPassphraseChanged, Reason: fmt.Sprintf("The passphrase of <%s> for sealed PDFs changed while the message was being sent (%s); send it again",
				d.Address, why)}
		}
		r, err := p.sealCopy(out, res.Plain, j.name, res.autocrypt, sealed.Options{Passphrase: secret, PracticeName: texts.PracticeName,
			Subject: texts.Subject, Text: texts.body, HTML: texts.html, Notice: notice, MaxBytes: texts.MaxBytes})
		if err != nil {
			return sealingRefusal(err, d.Address, texts.MaxBytes)
		}
		if res.Sealed == nil {
			res.Sealed = map[string]sealed.Result{}
		}
		res.Sealed[d.Recipient] = r
		d.SealedPDFSHA256, d.SealedPDFSize = r.PDFSHA256, r.PDFSize
	}
	res.toSeal = nil
	return nil
}

// sealCopy writes one sealed copy; field, when set, is a header field
// (the practice's Autocrypt key) put on top of the sealed message's own.
func (p *Policy) sealCopy(out Sink, plainName, name string, field []byte, o sealed.Options) (sealed.Result, error) {
	plain, err := out.Open(plainName)
	if err != nil {
		return sealed.Result{}, err
	}
	defer plain.Close()
	w, err := out.Create(name)
	if err != nil {
		return sealed.Result{}, err
	}
	src, dst := &recordingReader{r: plain}, &recordingWriter{w: w}
	dst.Write(field)
	r, err := p.sealer(dst, src, o)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	switch {
	case src.err != nil:
		return r, fmt.Errorf("seal copy: read the plain copy: %w", src.err)
	case dst.err != nil:
		return r, fmt.Errorf("seal copy: write %s: %w", name, dst.err)
	}
	return r, err
}

// sealingRefusal sorts what Seal returned: a message too large to seal,
// or with a part that cannot be decoded, is refused for good (nothing is
// sent to anybody); anything else is a fault the sender may retry past.
func sealingRefusal(err error, address string, maxBytes int64) error {
	var me *sealed.MalformedError
	switch {
	case errors.Is(err, sealed.ErrTooLarge):
		return &Refusal{TooLarge: true, Code: RefusalTooLargeToSeal, Reason: fmt.Sprintf("The message is too large to send as a sealed PDF to <%s> (over %s); send the attachments in separate messages",
			address, byteSize(maxBytes))}
	case errors.As(err, &me):
		return &Refusal{Malformed: true, Code: RefusalMalformed, Reason: "The message is damaged: " + me.Reason +
			", so it cannot be sealed into a PDF; send it again, and if it is refused again, write it anew or ask your admin"}
	}
	return fmt.Errorf("seal copy: %w", err)
}

// byteSize says a size the way a therapist reads it.
func byteSize(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%.0f MB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KB", (n+1023)>>10)
}

// RecheckSealed is asked right before a sealed copy is handed to the
// provider (the relay's SealedCheck): the copy opens only with the
// passphrase it was sealed with (eventID), and the client must still have
// that one on file. It returns "" when the copy may go, else a short
// phrase for the sender's failure notice and the record ("passphrase
// removed on 2026-12-02"). An error means it could not be told (it wraps
// ErrUnavailable) and names no address.
func (p *Policy) RecheckSealed(ctx context.Context, recipient string, eventID int64, now time.Time) (string, error) {
	st, err := p.registry.Current(ctx, recipient, now)
	if err != nil {
		return "", fmt.Errorf("passphrase check: %w", err)
	}
	switch {
	case st.Passphrase != nil && st.Passphrase.ID == eventID:
		return "", nil
	case st.Passphrase != nil:
		return "passphrase replaced on " + st.Passphrase.RecordedAt.In(now.Location()).Format(dateLayout), nil
	case st.PassphraseRemoved != nil:
		return "passphrase removed on " + st.PassphraseRemoved.RecordedAt.In(now.Location()).Format(dateLayout), nil
	}
	return "no passphrase on file", nil
}
