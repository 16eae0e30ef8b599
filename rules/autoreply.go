package rules

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/rules/hours"
)

// Acknowledgements are the practice's automatic replies to clients (the
// turnaround time, crisis resources). RFC 3834 says when not to answer.

// acknowledge sends the account's automatic reply to a client, at most once
// per period, along the path a therapist's message takes (notice,
// encryption or consent, archive).
func (m *Mailbox) acknowledge(ctx context.Context, h textproto.Header, from string) {
	reply := m.autoreply
	if ok, why := mayAcknowledge(h, from, m.IsPractice); !ok {
		m.log.Debug("no acknowledgement", "client", m.redact(from), "because", why)
		return
	}
	now := m.now()
	last, err := m.acks.LastAcknowledgement(ctx, m.account, from)
	if err != nil {
		m.log.Error("no acknowledgement: the registry cannot be read", "err", err)
		return
	}
	oh, hasHours, err := m.policy.Hours(ctx, m.account)
	if err != nil {
		m.log.Error("no acknowledgement: the registry cannot be read", "err", err)
		return
	}
	// Outside office hours, or during an absence, the client hears when to
	// expect an answer once in each closed stretch, however recent the
	// last acknowledgement.
	closedSince := time.Time{}
	if hasHours {
		closedSince, _ = oh.Schedule.ClosedSince(now)
	}
	recent := !last.IsZero() && now.Sub(last) < reply.Every
	if recent && (closedSince.IsZero() || !last.Before(closedSince)) {
		m.log.Debug("no acknowledgement: one was sent recently", "client", m.redact(from))
		return
	}
	var msg bytes.Buffer
	writeAcknowledgement(&msg, acknowledgement{From: reply.From, To: from, Subject: reply.Subject,
		Text: acknowledgementText(reply, oh, hasHours, now), InReplyTo: h.Get("Message-Id"), Date: now})
	id, err := m.send(ctx, m.account, reply.From, []string{from}, &msg)
	if err != nil {
		var refusal *Refusal
		if errors.As(err, &refusal) {
			// The reason names the client's address: it is in the archive's
			// refusal record, not in the log.
			m.log.Warn("no acknowledgement: the rules refuse mail to this client (no key, no consent)", "client", m.redact(from))
			return
		}
		m.log.Error("acknowledgement not sent", "client", m.redact(from), "err", err)
		return
	}
	if err := m.acks.RecordAcknowledgement(ctx, m.account, from, now); err != nil {
		m.log.Error("acknowledgement sent but not noted; the client may get another", "err", err)
	}
	m.log.Info("acknowledgement queued", "client", m.redact(from), "id", id)
}

// mayAcknowledge says whether a client's message may get an automatic
// reply, and if not, why: never to something automatic itself, bulk or from
// a list, never to the practice, never to a bounce.
func mayAcknowledge(h textproto.Header, from string, isPractice func(string) bool) (bool, string) {
	if v := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted"))); v != "" && v != "no" {
		return false, "auto-submitted"
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("Precedence"))) {
	case "bulk", "junk", "list":
		return false, "bulk"
	}
	for _, k := range []string{"List-Id", "List-Unsubscribe", "List-Post", "List-Help"} {
		if h.Has(k) {
			return false, "mailing list"
		}
	}
	if s := strings.ToLower(h.Get("X-Auto-Response-Suppress")); strings.Contains(s, "all") || strings.Contains(s, "autoreply") || strings.Contains(s, "oof") {
		return false, "auto-replies suppressed"
	}
	if strings.TrimSpace(h.Get("Return-Path")) == "<>" {
		return false, "a delivery notification"
	}
	n, err := addr.Normalize(from)
	if err != nil {
		return false, "no sender address"
	}
	if isPractice(n) {
		return false, "from the practice"
	}
	local := n[:strings.LastIndexByte(n, '@')]
	for _, robot := range []string{"mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply", "do-not-reply"} {
		if local == robot || strings.HasPrefix(local, robot+"+") {
			return false, "an automatic sender"
		}
	}
	return true, ""
}

// acknowledgementText is the practice's text, the date by which an
// answer can be expected (when the account has hours and a turnaround),
// and the crisis lines, always.
func acknowledgementText(reply *Autoreply, oh OfficeHours, hasHours bool, now time.Time) string {
	parts := []string{strings.TrimSpace(reply.Text)}
	if hasHours && oh.Turnaround != (hours.Turnaround{}) {
		if by, ok := oh.Schedule.ExpectedReply(now, oh.Turnaround); ok {
			parts = append(parts, expectedAnswer(reply.Language, now.In(oh.Schedule.Location), by.In(oh.Schedule.Location)))
		}
	}
	if c := strings.TrimSpace(reply.Crisis); c != "" && !strings.Contains(reply.Text, c) {
		parts = append(parts, c)
	}
	return strings.Join(parts, "\n\n")
}

// answerWords are one language's words for the expected answer's
// sentence: its template (the arrival, then the date), the days and
// months, the parts of a day, and how a date and time are written.
type answerWords struct {
	sentence string
	days     [7]string
	months   [12]string
	// dayPart words a weekday and an hour: "Friday evening".
	dayPart func(day string, hour int) string
	// date words a day, its month and the time: "Monday 7 December, 17:00".
	date func(day string, d int, month string, clock string) string
}

// answerLanguages are the languages of the expected answer's
// sentence ([account.autoreply] language).
var answerLanguages = map[string]answerWords{
	"en": {
		sentence: "Your message arrived on %s; you can expect an answer by %s.",
		days:     [7]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"},
		months:   [12]string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"},
		dayPart: func(day string, hour int) string {
			part := [...]string{"night", "morning", "afternoon", "evening"}[dayPartOf(hour)]
			return day + " " + part
		},
		date: func(day string, d int, month, clock string) string {
			return fmt.Sprintf("%s %d %s, %s", day, d, month, clock)
		},
	},
	"de": {
		sentence: "Ihre Nachricht ist am %s eingegangen; Sie können bis %s mit einer Antwort rechnen.",
		days:     [7]string{"Sonntag", "Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag"},
		months:   [12]string{"Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"},
		dayPart: func(day string, hour int) string {
			return day + [...]string{"nacht", "morgen", "nachmittag", "abend"}[dayPartOf(hour)]
		},
		date: func(day string, d int, month, clock string) string {
			return fmt.Sprintf("%s, %d. %s, %s Uhr", day, d, month, clock)
		},
	},
}

// dayPartOf is night (before 5), morning (before 12), afternoon (before
// 17) or evening, as 0 to 3.
func dayPartOf(hour int) int {
	switch {
	case hour < 5:
		return 0
	case hour < 12:
		return 1
	case hour < 17:
		return 2
	}
	return 3
}

// expectedAnswer is the sentence saying when a message that arrived at
// arrived can expect an answer, in the schedule's zone.
func expectedAnswer(language string, arrived, by time.Time) string {
	w, ok := answerLanguages[language]
	if !ok {
		w = answerLanguages["en"]
	}
	return fmt.Sprintf(w.sentence, w.dayPart(w.days[arrived.Weekday()], arrived.Hour()),
		w.date(w.days[by.Weekday()], by.Day(), w.months[by.Month()-1], by.Format("15:04")))
}

// acknowledgement is one automatic reply to write.
type acknowledgement struct {
	From, To  string // the practice's address, the client's
	Subject   string
	Text      string // the practice's words: turnaround time, crisis resources
	InReplyTo string // the client's Message-ID, if any
	Date      time.Time
}

// writeAcknowledgement writes the reply as a message (CRLF, UTF-8,
// quoted-printable), marked Auto-Submitted: auto-replied (RFC 3834).
func writeAcknowledgement(w io.Writer, a acknowledgement) error {
	var b strings.Builder
	b.WriteString("From: <" + a.From + ">\r\n")
	b.WriteString("To: <" + a.To + ">\r\n")
	b.WriteString("Subject: " + mime.QEncoding.Encode("utf-8", a.Subject) + "\r\n")
	b.WriteString("Date: " + a.Date.Format(time.RFC1123Z) + "\r\n")
	if id := strings.TrimSpace(a.InReplyTo); id != "" && !strings.ContainsAny(id, "\r\n") {
		b.WriteString("In-Reply-To: " + id + "\r\nReferences: " + id + "\r\n")
	}
	b.WriteString("Auto-Submitted: auto-replied\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	qp := quotedprintable.NewWriter(w)
	text := strings.ReplaceAll(strings.ReplaceAll(a.Text, "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasSuffix(text, "\r\n") {
		text += "\r\n"
	}
	if _, err := io.WriteString(qp, text); err != nil {
		return err
	}
	return qp.Close()
}

// LastAcknowledgement is when account last sent an automatic reply to
// address; zero if never.
func (r *Registry) LastAcknowledgement(ctx context.Context, account, address string) (time.Time, error) {
	n, err := addr.Normalize(address)
	if err != nil {
		return time.Time{}, err
	}
	var at string
	err = r.db.QueryRowContext(ctx, `SELECT sent_at FROM acknowledgements WHERE account = ? AND address = ? ORDER BY sent_at DESC LIMIT 1`, account, n).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("consent registry: %w: %w", ErrUnavailable, err)
	}
	return time.Parse(time.RFC3339, at)
}

// RecordAcknowledgement notes that account sent an automatic reply to address.
func (r *Registry) RecordAcknowledgement(ctx context.Context, account, address string, at time.Time) error {
	n, err := addr.Normalize(address)
	if err != nil {
		return err
	}
	_, err = r.db.ExecContext(ctx, `INSERT INTO acknowledgements (account, address, sent_at) VALUES (?, ?, ?)`, account, n, at.UTC().Format(time.RFC3339))
	if err != nil {
		return fmt.Errorf("consent registry: %w", err)
	}
	return nil
}

// AcknowledgementLanguage says whether the expected answer's sentence
// can be written in language ([account.autoreply] language).
func AcknowledgementLanguage(language string) bool {
	_, ok := answerLanguages[language]
	return ok
}
