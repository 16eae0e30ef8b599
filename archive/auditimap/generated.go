package auditimap

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/record"
)

// Messages the view writes itself. Each says, in its first line and in a
// header field, that the view made it and that it is not part of the
// clinical record; the archived messages are never altered to say so.

const (
	viewFrom   = "sealpost archive view <archive-view@sealpost.invalid>"
	viewDomain = "archive-view.sealpost.invalid"
	// generatedNote is the first line of every generated message.
	generatedNote = "Written by the archive view (sealpost archive serve-imap) from the record. This message is not part of the clinical record."
)

// generated writes a whole message: a plain text part, quoted-printable
// (lines of the record, such as a provider's reply, may be long).
func generated(subject string, date time.Time, msgID, inReplyTo, about, text string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\n", viewFrom)
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", textutil.OneLine(subject)))
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", msgID, viewDomain)
	if inReplyTo != "" {
		// Threads the summary with the message in clients that thread
		// across folders.
		fmt.Fprintf(&b, "In-Reply-To: <%s>\r\nReferences: <%s>\r\n", inReplyTo, inReplyTo)
	}
	fmt.Fprintf(&b, "Auto-Submitted: auto-generated\r\n")
	fmt.Fprintf(&b, "X-Sealpost-Generated: %s; not part of the clinical record\r\n", about)
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	qp.Write([]byte(strings.ReplaceAll(generatedNote+"\n\n"+text, "\n", "\r\n")))
	qp.Close()
	b.WriteString("\r\n")
	return b.Bytes()
}

// welcomeMessage is INBOX's one message: every IMAP client opens INBOX
// first, and this tells an auditor what the folders hold.
func welcomeMessage(date time.Time) []byte {
	return generated("How this view of the clinical record is organised", date, "welcome", "", "the view's INBOX", welcomeText)
}

const welcomeText = `This is a read-only view of the practice's clinical record. Its folders:

All
  Every message in the record, sent and received, in the order it was
  recorded: byte for byte the archived message.
Clients/A/ADDRESS
  Every message to or from one client (both directions), in a folder of
  the address's first letter (0-9 and Other for the rest); only clients
  with messages in the record have one.
Months/YYYY-MM
  Every message recorded in that month.
Decisions
  For every message sent through sealpost, a summary the view writes from
  the record: for each recipient, how the copy was protected (internal,
  encrypted, sealed, consented), what that rested on (the consent, the key,
  the passphrase event), and what became of it (delivered, deferred,
  bounced). People the message's To or Cc names but who never received it
  are listed too. When something new is recorded about a message (a
  delivery, a bounce), its summary is replaced by a new one.
Refused
  Every recipient or message the practice's rules refused, with the reason.
INBOX
  This message.

Messages in All, Clients and Months are the record itself. Messages in
INBOX, Decisions and Refused are written by the view; they are not part of
the record and are not in exports.

Nothing can be changed, moved, added or deleted. Read and unread (\Seen) is
kept for each viewer while the view runs and forgotten when it stops.`

// decisionsMessage is the summary of the decisions and deliveries of the
// outbound message recorded as seq, as of record asOf.
func decisionsMessage(v *archive.View, seq, asOf uint64) []byte {
	listed, ok := v.Message(seq)
	if !ok {
		return unreadableMessage(&archive.ViewMessage{Seq: seq, Updated: asOf}, errors.New("no longer in the view (pruned)"))
	}
	listed.Updated = asOf
	m, err := v.Details(listed)
	if err != nil {
		return unreadableMessage(listed, err)
	}
	var t strings.Builder
	fmt.Fprintf(&t, "Subject:    %s\n", textutil.OneLine(m.Subject))
	fmt.Fprintf(&t, "From:       %s (account %s)\n", textutil.OneLine(m.From), m.Account)
	fmt.Fprintf(&t, "Recorded:   %s, record %d, queue id %s\n", when(m.Time), m.Seq, m.ID)
	if m.MessageID != "" {
		fmt.Fprintf(&t, "Message-ID: <%s>\n", m.MessageID)
	}
	if m.Updated != m.Seq {
		fmt.Fprintf(&t, "As of:      record %d\n", m.Updated)
	}
	fmt.Fprintf(&t, "\nRECIPIENTS\n")
	for _, d := range m.Decisions {
		writeRecipient(&t, m, d)
	}
	if missing := m.NotSentTo(); len(missing) > 0 {
		fmt.Fprintf(&t, "\nNAMED, NEVER SENT TO\n")
		fmt.Fprintf(&t, "The message's header or its submission names them, but it was not sent to them.\n")
		for _, n := range missing {
			writeNotSent(&t, n)
		}
	}
	if len(m.Fired) > 0 {
		fmt.Fprintf(&t, "\nCONTENT RULES THAT FIRED\n")
		for _, h := range m.Fired {
			fmt.Fprintf(&t, "- %s: %s, in the %s\n", h.Rule, h.Action, h.Where)
		}
	}
	about := fmt.Sprintf("decisions for record %d as of record %d", m.Seq, m.Updated)
	return generated("Decisions: "+m.Subject, m.Time, fmt.Sprintf("decisions.%d.%d", m.Seq, m.Updated), m.MessageID, about, t.String())
}

func writeNotSent(t *strings.Builder, n archive.NotSent) {
	field := fieldLabel(n.Field)
	if field == "" {
		field = "not in To or Cc"
	}
	switch {
	case n.Ref != "":
		fmt.Fprintf(t, "- %s (%s): refused when the message was submitted, ref %s (in Refused)\n", n.Address, field, n.Ref)
	default:
		fmt.Fprintf(t, "- %s (%s): not among the recipients the message was submitted to\n", n.Address, field)
	}
}

func writeRecipient(t *strings.Builder, m *archive.ViewMessage, d record.Decision) {
	field := fieldLabel(m.FieldOf(d))
	if field != "" {
		field = " (" + field + ")"
	}
	fmt.Fprintf(t, "- %s%s\n", d.Address, field)
	fmt.Fprintf(t, "  Decision: %s%s\n", d.Protection, reply(d.Reason))
	if d.KeyFingerprint != "" {
		fmt.Fprintf(t, "  Key:      %s\n", d.KeyFingerprint)
	}
	if c := d.Consent; c != nil {
		fmt.Fprintf(t, "  Basis:    %s\n", basis(c))
	}
	if d.SealedPDFSHA256 != "" {
		fmt.Fprintf(t, "  PDF sent: %d octets, SHA-256 %s\n", d.SealedPDFSize, d.SealedPDFSHA256)
	}
	evs := m.EventsFor(d)
	if len(evs) == 0 {
		fmt.Fprintf(t, "  Delivery: pending (no outcome recorded yet)\n")
	}
	var deferred []archive.Event
	for _, ev := range evs {
		if ev.Kind == archive.Deferred {
			deferred = append(deferred, ev)
			continue
		}
		fmt.Fprintf(t, "  Delivery: %s %s%s\n", ev.Kind, when(ev.Time), reply(ev.Reply))
	}
	if n := len(deferred); n > 0 {
		last := deferred[n-1]
		fmt.Fprintf(t, "  Deferred: %d time(s), the last %s%s\n", n, when(last.Time), reply(last.Reply))
	}
}

// basis names the consent or passphrase event a decision rested on.
func basis(c *record.ConsentEvent) string {
	var b strings.Builder
	switch c.Kind {
	case record.PassphraseSet:
		fmt.Fprintf(&b, "passphrase set %s (consent event %d)", when(c.RecordedAt), c.ID)
	default:
		kind := c.Kind
		if kind == "" || kind == "given" {
			kind = "written consent to unencrypted email"
		}
		fmt.Fprintf(&b, "%s (consent event %d)", kind, c.ID)
		if c.Signed != "" {
			fmt.Fprintf(&b, ", signed %s", c.Signed)
		}
		if c.Expires != "" {
			fmt.Fprintf(&b, ", expires %s", c.Expires)
		}
		if c.Evidence != "" {
			fmt.Fprintf(&b, ": %q", textutil.OneLine(c.Evidence))
		}
	}
	if c.Client != "" {
		fmt.Fprintf(&b, ", client %q", textutil.OneLine(c.Client))
	}
	return b.String()
}

// refusalMessage is one refusal, as the record keeps it, and the message
// its submission went on to be (to the recipients not refused), if any.
func refusalMessage(v *archive.View, r *archive.ViewRefusal) []byte {
	var sent *archive.ViewMessage
	if r.Ref != "" {
		sent, _ = v.SentAs(r.Ref)
	}
	if sent != nil {
		// Unreadable again since it was listed: the refusal is told
		// without it.
		sent, _ = v.Details(sent)
	}
	var t strings.Builder
	who := r.Recipient
	if who == "" {
		who = "a whole message"
	}
	fmt.Fprintf(&t, "Refused:  %s\n", who)
	fmt.Fprintf(&t, "When:     %s, record %d\n", when(r.Time), r.Seq)
	fmt.Fprintf(&t, "Account:  %s\n", r.Account)
	if r.Ref != "" {
		fmt.Fprintf(&t, "Ref:      %s (what the therapist was told; sealpost refusals show %s)\n", r.Ref, r.Ref)
	}
	if r.Code != "" {
		fmt.Fprintf(&t, "Code:     %s\n", r.Code)
	}
	fmt.Fprintf(&t, "Reason:   %s\n", textutil.OneLine(r.Reason))
	inReplyTo := ""
	switch {
	case sent != nil:
		fmt.Fprintf(&t, "\nThe message was not sent to this recipient. The others of its submission got it:\n")
		fmt.Fprintf(&t, "%q, record %d, queue id %s (its summary is in Decisions).\n", textutil.OneLine(sent.Subject), sent.Seq, sent.ID)
		inReplyTo = sent.MessageID
	case r.Recipient != "":
		fmt.Fprintf(&t, "\nThe message was not sent to this recipient.\n")
	default:
		fmt.Fprintf(&t, "\nThe message was sent to nobody.\n")
	}
	about := fmt.Sprintf("refusal record %d", r.Seq)
	return generated("Refused: "+who, r.Time, fmt.Sprintf("refused.%d", r.Seq), inReplyTo, about, t.String())
}

// unreadableMessage stands in for a summary whose record could not be read
// again (damaged or pruned since it was listed).
func unreadableMessage(m *archive.ViewMessage, err error) []byte {
	about := fmt.Sprintf("decisions for record %d", m.Seq)
	return generated("Decisions: record unreadable", m.Time, fmt.Sprintf("decisions.%d.%d", m.Seq, m.Updated), "", about,
		fmt.Sprintf("Record %d could not be read again: %s\nsealpost archive verify checks the archive.\n", m.Seq, textutil.OneLine(err.Error())))
}

// when is a time to the second, with its zone.
func when(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 MST") }

func reply(s string) string {
	if s = textutil.OneLine(s); s == "" {
		return ""
	}
	return ": " + s
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
	return f
}
