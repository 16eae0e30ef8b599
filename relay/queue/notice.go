package queue

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"mime/quotedprintable"
	"regexp"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/ids"
	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

type noticeKind int

// noticeCopyName is the spool name of a notice's one copy; the rules name
// the copies of a submitted message (rules.SubmittedCopyName...).
const noticeCopyName = "dsn"

const (
	noticeFailed noticeKind = iota
	noticeDelayed
)

func (k noticeKind) String() string {
	if k == noticeDelayed {
		return "delayed"
	}
	return "failed"
}

// reportName is the display name of a delivery report's From: it comes from
// the account's own address, as the only sender every provider takes from
// it (Microsoft 365 refuses any other From, 554 5.2.252 SendAsDenied;
// providers may refuse a null MAIL FROM on submission).
const reportName = "sealpost delivery report"

// reportID is the Message-ID of the report of this kind about message id:
// the same every time it is made, so a mailbox is never given it twice.
func reportID(id string, kind noticeKind, hostname string) string {
	return fmt.Sprintf("sealpost-report.%s.%s@%s", kind, id, hostname)
}

var enhancedRE = regexp.MustCompile(`^\d{3} ([245]\.\d{1,3}\.\d{1,3})\b`)

// statusOf takes the enhanced status code out of a provider reply, or makes
// one up from the outcome when the provider gave none.
func statusOf(reply string, kind noticeKind, expired bool) string {
	if strings.HasPrefix(reply, consentWithdrawnPrefix) || strings.HasPrefix(reply, passphraseChangedPrefix) {
		return "5.7.1" // delivery not authorized (RFC 3463)
	}
	if m := enhancedRE.FindStringSubmatch(reply); m != nil && !expired {
		return m[1]
	}
	switch {
	case kind == noticeDelayed:
		return "4.0.0"
	case expired:
		return "4.4.7" // delivery time expired (RFC 3463)
	default:
		return "5.0.0"
	}
}

// enqueueNotice queues a delivery report (RFC 3464's format) to the sender
// of e about rcpts: a bounce, or a one-time "still trying" notice. It goes
// to the account's own mailbox: straight into its INBOX where sealpost
// reads that mailbox (ReportInbox), otherwise sent as the account itself,
// from and to its own address. A report is never reported on itself.
func (q *Queue) enqueueNotice(e *entry, kind noticeKind, rcpts []rcptState, now time.Time) error {
	if e.meta.Sender == "" {
		return nil
	}
	id := ids.New(now)
	in, err := q.spool.newIncoming(id, now)
	if err != nil {
		return err
	}
	defer in.Abort()
	w, err := in.Create(noticeCopyName)
	msgID := reportID(e.meta.ID, kind, q.hostname)
	if err == nil {
		err = q.writeNotice(w, e, kind, rcpts, msgID, now)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	n := newEntry(q.spool, id, e.meta.Account, e.meta.Sender, now, []rules.Copy{{Name: noticeCopyName, Recipients: []string{e.meta.Sender}, Protection: record.Internal}}, true)
	n.meta.ReportID = msgID
	if err := in.commit(n, false); err != nil {
		return err
	}
	q.Enqueue(in)
	return nil
}

func (q *Queue) writeNotice(w io.Writer, e *entry, kind noticeKind, rcpts []rcptState, msgID string, now time.Time) error {
	boundary := "sealpost-dsn-" + randomToken()
	subject, action := "Undelivered Mail Returned to Sender", "failed"
	if kind == noticeDelayed {
		subject, action = "Delayed Mail (still being retried)", "delayed"
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "From: %s <%s>\r\n", reportName, e.meta.Sender)
	fmt.Fprintf(bw, "To: <%s>\r\n", e.meta.Sender)
	fmt.Fprintf(bw, "Subject: %s\r\n", subject)
	fmt.Fprintf(bw, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(bw, "Message-Id: <%s>\r\n", msgID)
	fmt.Fprintf(bw, "Auto-Submitted: auto-replied\r\n")
	fmt.Fprintf(bw, "MIME-Version: 1.0\r\n")
	fmt.Fprintf(bw, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", boundary)
	fmt.Fprintf(bw, "This is a MIME-encapsulated delivery status notification.\r\n\r\n")

	fmt.Fprintf(bw, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", boundary)
	var text strings.Builder
	fmt.Fprintf(&text, "This is the sealpost relay at %s.\n\n", q.hostname)
	received := e.meta.Received.Format("Mon, 2 Jan 2006 15:04 MST")
	if kind == noticeDelayed {
		fmt.Fprintf(&text, "Your message of %s has not been delivered yet to the recipients below.\n", received)
		fmt.Fprintf(&text, "Nothing needs to be done: sealpost keeps trying until %s and tells you\nif it gives up. This is only a warning.\n\n",
			e.meta.Received.Add(q.opts.Lifetime).Format("Mon, 2 Jan 2006 15:04 MST"))
	} else {
		fmt.Fprintf(&text, "Your message of %s could not be delivered to the recipients below.\n", received)
		fmt.Fprintf(&text, "The message itself is kept in the practice's record. Check the address, or\nask your administrator about the reason given.\n\n")
	}
	for _, r := range rcpts {
		fmt.Fprintf(&text, "<%s>: %s\n", r.Recipient, orNone(r.Reply))
	}
	qp := quotedprintable.NewWriter(bw)
	io.WriteString(qp, strings.ReplaceAll(text.String(), "\n", "\r\n"))
	qp.Close()
	fmt.Fprintf(bw, "\r\n\r\n")

	fmt.Fprintf(bw, "--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary)
	fmt.Fprintf(bw, "Reporting-MTA: dns; %s\r\n", q.hostname)
	fmt.Fprintf(bw, "X-Sealpost-Queue-ID: %s\r\n", e.meta.ID)
	fmt.Fprintf(bw, "Arrival-Date: %s\r\n", e.meta.Received.Format(time.RFC1123Z))
	expired := now.Sub(e.meta.Received) >= q.opts.Lifetime
	for _, r := range rcpts {
		fmt.Fprintf(bw, "\r\nFinal-Recipient: rfc822; %s\r\n", r.Recipient)
		fmt.Fprintf(bw, "Action: %s\r\n", action)
		fmt.Fprintf(bw, "Status: %s\r\n", statusOf(r.Reply, kind, expired))
		if r.Reply != "" && enhancedRE.MatchString(r.Reply) {
			fmt.Fprintf(bw, "Diagnostic-Code: smtp; %s\r\n", headerSafe(r.Reply))
		}
		fmt.Fprintf(bw, "Last-Attempt-Date: %s\r\n", now.Format(time.RFC1123Z))
		if kind == noticeDelayed {
			fmt.Fprintf(bw, "Will-Retry-Until: %s\r\n", e.meta.Received.Add(q.opts.Lifetime).Format(time.RFC1123Z))
		}
	}
	fmt.Fprintf(bw, "\r\n")

	// The headers of the copy as it was sent: for an encrypted copy that is the
	// outer header, whose subject is "...", so the notice reveals nothing the
	// provider had not already seen.
	if len(rcpts) > 0 {
		fmt.Fprintf(bw, "--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary)
		if err := copyHeaderSection(bw, e, rcpts[0].Copy); err != nil {
			return err
		}
	}
	fmt.Fprintf(bw, "\r\n--%s--\r\n", boundary)
	return bw.Flush()
}

func copyHeaderSection(w io.Writer, e *entry, copyName string) error {
	f, err := e.open(copyName)
	if err != nil {
		return err
	}
	defer f.Close()
	hdr, err := headerSection(bufio.NewReader(f))
	if err != nil {
		return err
	}
	_, err = w.Write(hdr)
	return err
}

// A notice quotes a header section up to these limits (the submission's
// own), or none of it.
const (
	maxQuotedHeaderBytes  = 100 << 10
	maxQuotedHeaderFields = 1000
)

// headerSection reads a copy's header section, up to and including the
// empty line that ends it; nothing when it is beyond the limits.
func headerSection(br *bufio.Reader) ([]byte, error) {
	var raw bytes.Buffer
	fields := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && err != io.EOF {
			return nil, err
		}
		blank := len(line) == 2 && line[0] == '\r' && line[1] == '\n'
		if len(line) > 0 && line[0] != ' ' && line[0] != '\t' && !blank {
			fields++
		}
		raw.Write(line)
		if raw.Len() > maxQuotedHeaderBytes || fields > maxQuotedHeaderFields {
			return nil, nil
		}
		if blank || err == io.EOF {
			return raw.Bytes(), nil
		}
	}
}

func randomToken() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func headerSafe(s string) string {
	s = textutil.OneLine(s)
	if len(s) > 900 {
		s = s[:900]
	}
	return s
}
