package submission

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/rules"
)

// reply is an SMTP reply sealpost gives a mail client, with the reason it
// counts under in sealpost_refusals_total when it refuses something ("" for
// a reply that refuses nothing, and for the few refusals left uncounted).
// text is a fmt format for the replies that name something (an address, a
// header field, a rule's reason); lines are separated by "\n".
//
// Every reply a client sees from sealpost is one of these: go-smtp would
// turn a plain error into "451 4.0.0 <error text>" (or a permanent 554
// after DATA), so internal text would leak to the client, and a passing
// fault would make it give up. What go-smtp answers on its own (354, a
// command out of sequence, too many recipients) is go-smtp's.
type reply struct {
	code   int
	status smtp.EnhancedCode // smtp.NoEnhancedCode: none
	text   string
	reason string
}

func (r *reply) Error() string { return r.String() }

// String is the reply as the client reads it, on one line.
func (r *reply) String() string {
	if r.status == smtp.NoEnhancedCode {
		return fmt.Sprintf("%d %s", r.code, textutil.OneLine(r.text))
	}
	return fmt.Sprintf("%d %d.%d.%d %s", r.code, r.status[0], r.status[1], r.status[2], textutil.OneLine(r.text))
}

// with fills in what the reply names, which must be on one line
// (textutil.OneLine).
func (r *reply) with(args ...any) *reply {
	c := *r
	c.text = fmt.Sprintf(r.text, args...)
	return &c
}

// smtp is the reply as go-smtp writes it.
func (r *reply) smtp() *smtp.SMTPError {
	return &smtp.SMTPError{Code: r.code, EnhancedCode: r.status, Message: r.text}
}

// write sends the reply itself, where go-smtp is not in charge: before
// TLS, and to a connection that is refused or cut off.
func (r *reply) write(w io.Writer) error {
	lines := strings.Split(r.text, "\n")
	var b strings.Builder
	for i, l := range lines {
		sep := " "
		if i < len(lines)-1 {
			sep = "-"
		}
		if r.status == smtp.NoEnhancedCode {
			fmt.Fprintf(&b, "%d%s%s\r\n", r.code, sep, l)
		} else {
			fmt.Fprintf(&b, "%d%s%d.%d.%d %s\r\n", r.code, sep, r.status[0], r.status[1], r.status[2], l)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

var none = smtp.NoEnhancedCode

// The replies, by what they answer.
var (
	// A connection, before any command.
	replyTooManyConnections = &reply{421, smtp.EnhancedCode{4, 7, 0}, "Too many connections to this server; try again in a few minutes", "too_many_connections"}
	replyTooManyFromAddress = &reply{421, smtp.EnhancedCode{4, 7, 0}, "Too many connections from your address; close some (or wait a few minutes) and try again", "too_many_from_address"}
	replyEarlyTalker        = &reply{554, smtp.EnhancedCode{5, 5, 1}, "Protocol error: the client talked before the server's greeting; wait for the 220 line (RFC 5321 4.3.1)", "early_talker"}

	// The dialogue before STARTTLS (wire.go).
	replyGreeting          = &reply{220, none, "%s ESMTP Service Ready", ""}
	replyEHLOBeforeTLS     = &reply{250, none, "%s Hello %s\nENHANCEDSTATUSCODES\nSIZE %d\nSTARTTLS", ""}
	replyHELO              = &reply{250, none, "%s Hello %s", ""}
	replyStartTLS          = &reply{220, smtp.EnhancedCode{2, 0, 0}, "Ready to start TLS", ""}
	replyNoop              = &reply{250, smtp.EnhancedCode{2, 0, 0}, "OK", ""}
	replyReset             = &reply{250, smtp.EnhancedCode{2, 0, 0}, "Session reset", ""}
	replyBye               = &reply{221, smtp.EnhancedCode{2, 0, 0}, "Bye", ""}
	replyHelloArgument     = &reply{501, smtp.EnhancedCode{5, 5, 2}, "Domain/address argument required", "other_permanent"}
	replyTLSFirst          = &reply{530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first", "tls_required"}
	replyTooManyBeforeTLS  = &reply{421, smtp.EnhancedCode{4, 7, 0}, "Too many commands before STARTTLS, closing connection", "too_many_errors"}
	replyEndlessLineBefore = &reply{500, smtp.EnhancedCode{5, 5, 2}, "Line too long, closing connection", ""}

	// Any command.
	replyLongCommand   = &reply{500, smtp.EnhancedCode{5, 5, 2}, "Command line too long: at most 512 octets (RFC 5321 4.5.3.1.4)", "long_command"}
	replyTooManyErrors = &reply{421, smtp.EnhancedCode{4, 7, 0}, "Too many errors in this session; closing the connection", "too_many_errors"}
	replyShuttingDown  = &reply{421, smtp.EnhancedCode{4, 3, 2}, "The relay is shutting down; nothing was sent, try again in a moment", "shutting_down"}

	// AUTH.
	replyNeedTLS          = &reply{538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism", "tls_required"}
	replyBadCredentials   = &reply{535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid", "bad_credentials"}
	replyAuthThrottled    = &reply{454, smtp.EnhancedCode{4, 7, 0}, "Too many failed logins from here or for this account; try again in an hour", "auth_throttled"}
	replyUnknownMechanism = &reply{504, smtp.EnhancedCode{5, 5, 4}, "Unsupported authentication mechanism; use PLAIN or LOGIN", "unknown_mechanism"}
	replyBadAuthData      = &reply{501, smtp.EnhancedCode{5, 5, 2}, "Malformed authentication data", "bad_auth_data"}
	replyAlreadyLoggedIn  = &reply{503, smtp.EnhancedCode{5, 5, 1}, "Already authenticated", ""}
	replyUnexpectedLogin  = &reply{454, smtp.EnhancedCode{4, 7, 0}, "unexpected LOGIN response", ""}

	// MAIL (and RCPT and DATA without a login).
	replyAuthRequired      = &reply{530, smtp.EnhancedCode{5, 7, 0}, "Authentication required", "auth_required"}
	replyNullSender        = &reply{550, smtp.EnhancedCode{5, 7, 1}, "An empty sender <> is not accepted on submission; send as one of your own addresses", "null_sender"}
	replySenderNotPlain    = &reply{553, smtp.EnhancedCode{5, 1, 7}, notPlain, "bad_address"}
	replyBadSender         = &reply{553, smtp.EnhancedCode{5, 1, 7}, "<%s>: invalid sender address", "bad_address"}
	replySenderNotAccounts = &reply{550, smtp.EnhancedCode{5, 7, 1}, "<%s> is not an address of account %s; send as one of your own addresses", "sender_not_allowed"}

	// RCPT.
	replyRecipientNotPlain = &reply{550, smtp.EnhancedCode{5, 1, 3}, notPlain, "bad_address"}
	replyBadRecipient      = &reply{550, smtp.EnhancedCode{5, 1, 3}, "<%s>: not a valid recipient address (%s)", "bad_address"}
	// A recipient the rules refuse: the rules' reason (the address, what
	// is missing, whom to ask), then the reference. A mail client shows it
	// inside its own sentence (Thunderbird: "The mail server responded:
	// ... . Please check the message recipient ..."), so it ends without a
	// period. Nothing is sent to anybody: a message that goes on to DATA is
	// refused (replyPartialSend), unless partial sends are allowed, and
	// then the reply says only this recipient was left out.
	replyRecipientRefused   = &reply{550, smtp.EnhancedCode{5, 7, 1}, "Nothing was sent to anybody. %s%s", "recipient_policy"}
	replyRecipientLeftOut   = &reply{550, smtp.EnhancedCode{5, 7, 1}, "Not sent to this recipient. %s%s", "recipient_policy"}
	replySenderAccepted     = &reply{250, smtp.EnhancedCode{2, 1, 0}, "Sender <%s> OK", ""}
	replyRecipientAccepted  = &reply{250, smtp.EnhancedCode{2, 1, 5}, "Recipient <%s> OK: %s", ""}
	replyRecipientSameAgain = &reply{250, smtp.EnhancedCode{2, 1, 5}, "Recipient <%s> OK: already named, it gets one copy", ""}
	replyPartialSend        = &reply{550, smtp.EnhancedCode{5, 7, 1}, "Nothing was sent to anybody, because %s %s refused (see the earlier replies); send the message again without them, or ask your admin to set them up", "partial_send"}

	// DATA: the message's lines.
	replyBareLF       = &reply{554, smtp.EnhancedCode{5, 6, 0}, "Message refused: it has a line ending in a bare LF without CR (possible SMTP smuggling); nothing was sent", "smuggling"}
	replyBareCR       = &reply{554, smtp.EnhancedCode{5, 6, 0}, "Message refused: it has a bare CR not followed by LF (possible SMTP smuggling); nothing was sent", "smuggling"}
	replyNUL          = &reply{554, smtp.EnhancedCode{5, 6, 0}, "Message refused: it contains a NUL byte; nothing was sent", "nul_byte"}
	replyLongLine     = &reply{554, smtp.EnhancedCode{5, 6, 0}, "Message refused: a line is longer than 998 octets in the header, or in a signed or encrypted part that cannot be re-encoded (RFC 5322); nothing was sent", "long_line"}
	replyLongBodyLine = &reply{554, smtp.EnhancedCode{5, 6, 0}, "Message refused: a line is longer than 1 MiB; nothing was sent", "long_line"}
	replyTooBig       = &reply{552, smtp.EnhancedCode{5, 3, 4}, "Message too big for this server (over the SIZE it announced); nothing was sent", "too_big"}
	// 421: the rest of the message is still on its way and cannot be told
	// from commands, so the connection is closed after this reply.
	replyDataDeadline = &reply{421, smtp.EnhancedCode{4, 4, 2}, "The message took too long to arrive (the time allowed is the idle timeout plus the size limit at 64 KiB a second); nothing was sent; closing the connection, please try again", "data_deadline"}
	replyDataIdle     = &reply{421, smtp.EnhancedCode{4, 4, 2}, "Nothing more of the message arrived within the idle timeout; nothing was sent; closing the connection, please try again", "data_timeout"}

	// DATA: the message's header section.
	replyHeaderTooBig     = &reply{552, smtp.EnhancedCode{5, 3, 4}, "Message refused: its header section is too large (over 100 KiB or 1000 fields)", "header_too_big"}
	replyHeaderUnreadable = &reply{554, smtp.EnhancedCode{5, 6, 0}, "Message refused: its header section cannot be parsed", "other_permanent"}
	replyFieldTwice       = &reply{550, smtp.EnhancedCode{5, 6, 0}, "Message refused: it has more than one %s: header; nothing was sent", "other_permanent"}
	replyNoFrom           = &reply{550, smtp.EnhancedCode{5, 7, 1}, "Message refused: it has no From: header; set one of your own addresses as sender", "no_from"}
	replyFromUnreadable   = &reply{550, smtp.EnhancedCode{5, 6, 0}, "Message refused: its From: header cannot be read; set one of your own addresses as sender", "other_permanent"}
	replyFieldUnreadable  = &reply{550, smtp.EnhancedCode{5, 6, 0}, "Message refused: its %s: header cannot be read", "other_permanent"}
	replyFieldNotPlain    = &reply{550, smtp.EnhancedCode{5, 1, 7}, notPlain, "bad_address"}
	replyFieldNotAccounts = &reply{550, smtp.EnhancedCode{5, 7, 1}, "<%s> in the %s is not an address of account %s; send as one of your own addresses", "header_sender_not_allowed"}
	// The rules' refusals of a message (rules.Refusal), with its reference.
	replyContentRefused = &reply{550, smtp.EnhancedCode{5, 7, 1}, "Nothing was sent to anybody. %s%s", "content_rule"}
	replyMalformed      = &reply{554, smtp.EnhancedCode{5, 6, 0}, "Nothing was sent to anybody. %s%s", "malformed"}
	replyTooBigToSeal   = &reply{552, smtp.EnhancedCode{5, 3, 4}, "Nothing was sent to anybody. %s%s", "too_big"} // for a sealed recipient's PDF (rules.Refusal.TooLarge)
	replyAccepted       = &reply{250, smtp.EnhancedCode{2, 0, 0}, "OK: queued as %s", ""}
	// Copies to clients wait for the sender's office hours; colleagues'
	// go now.
	replyAcceptedHeld = &reply{250, smtp.EnhancedCode{2, 0, 0}, "OK: queued as %s; to clients held until %s", ""}

	// Whatever step fails inside sealpost: temporary, nothing was sent.
	replyTempLocal   = &reply{451, smtp.EnhancedCode{4, 3, 0}, "Temporary local problem; nothing was sent; please try again later", "temporary"}
	replyPolicyDown  = &reply{451, smtp.EnhancedCode{4, 3, 0}, "The confidentiality rules cannot be checked right now; nothing was sent; please try again later", "policy_unavailable"}
	replyStorageFull = &reply{452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage; nothing was sent; please try again later", "storage_full"}
)

// notPlain refuses an address holding a character that mail systems would
// change or drop (addr.Strict), shown as [U+XXXX]: the therapist cannot see
// an invisible one. Its arguments: the address, where ("" or " in the From:
// header") and the character.
const notPlain = "<%s>%s holds %s; mail systems would change or drop it, so the mail could reach someone else or no one: type the address plainly and send again"

func notPlainReply(r *reply, where string, e *addr.NotPlainError) *reply {
	c := *r
	c.text = fmt.Sprintf(notPlain, addr.Escape(textutil.OneLine(e.Address)), where, e.Char())
	return &c
}

// ErrShuttingDown is what the relay answers a message with once it no
// longer takes any in (replyShuttingDown).
var ErrShuttingDown = errors.New("relay shutting down")

// replyFor maps any error from a stage of the session to the reply the
// client gets, logging internal causes (never sent to the client) with the
// session's logger.
func replyFor(ctx context.Context, log *slog.Logger, stage string, err error) *reply {
	var r *reply
	if errors.As(err, &r) {
		return r
	}
	var refusal *rules.Refusal
	if errors.As(err, &refusal) {
		reason, ref := textutil.OneLine(refusal.Reason), refText(refusal)
		switch {
		case refusal.Code == rules.RefusalPartialSend:
			return replyPartialSend.with(reason, wereOrWas(reason))
		case stage == "rcpt" || refusal.Recipient:
			return replyRecipientRefused.with(reason, ref)
		case refusal.TooLarge:
			return replyTooBigToSeal.with(reason, ref)
		case refusal.Malformed:
			// Sending it again as it is cannot help: a 4xx would be retried for ever.
			return replyMalformed.with(reason, ref)
		}
		return replyContentRefused.with(reason, ref)
	}
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge):
		return replyTooBig
	case errors.Is(err, ErrShuttingDown):
		return replyShuttingDown
	case isStorageFull(err):
		log.ErrorContext(ctx, "storage full", "stage", stage, "err", err)
		return replyStorageFull
	case errors.Is(err, rules.ErrUnavailable):
		log.ErrorContext(ctx, "policy unavailable", "stage", stage, "err", err)
		return replyPolicyDown
	case errors.Is(err, rules.ErrLineTooLong):
		return replyLongLine
	case errors.Is(err, smtp.ErrTooLongLine):
		return replyLongBodyLine
	case errors.Is(err, smtp.ErrDataReset) || errors.Is(err, os.ErrDeadlineExceeded):
		log.InfoContext(ctx, "transfer aborted", "stage", stage, "err", err)
		return replyTempLocal
	}
	log.ErrorContext(ctx, "temporary failure", "stage", stage, "err", err)
	return replyTempLocal
}

// refText is a refusal's reference as the reply ends with it.
func refText(refusal *rules.Refusal) string {
	if refusal.Ref == "" {
		return ""
	}
	return " (ref " + refusal.Ref + ")"
}

// wereOrWas agrees with the list of refused recipients a partial send names.
func wereOrWas(list string) string {
	if strings.Count(list, "<") > 1 {
		return "were"
	}
	return "was"
}

func isStorageFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
