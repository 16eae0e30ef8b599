package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/textutil"
	"github.com/sealpost/sealpost/rules"
)

// Every reply a mail client sees comes from here. go-smtp would turn a plain
// error into "451 4.0.0 <error text>" (or a permanent 554 after DATA): internal
// text would leak to the client, and a passing fault would make it give up.

func smtpErr(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

var (
	errAuthRequired   = smtpErr(530, smtp.EnhancedCode{5, 7, 0}, "Authentication required")
	errNeedTLS        = smtpErr(538, smtp.EnhancedCode{5, 7, 11}, "Encryption required for requested authentication mechanism")
	errBadCredentials = smtpErr(535, smtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
	errAuthThrottled  = smtpErr(454, smtp.EnhancedCode{4, 7, 0}, "Too many failed logins from here or for this account; try again in an hour")
	errUnknownMech    = smtpErr(504, smtp.EnhancedCode{5, 5, 4}, "Unsupported authentication mechanism; use PLAIN or LOGIN")
	errBadAuthData    = smtpErr(501, smtp.EnhancedCode{5, 5, 2}, "Malformed authentication data")
	errTooBig         = smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "Message too big for this server")
	errBareLF         = smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message refused: it has a line ending in a bare LF without CR (possible SMTP smuggling); nothing was sent")
	errBareCR         = smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message refused: it has a bare CR not followed by LF (possible SMTP smuggling); nothing was sent")
	errNUL            = smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message refused: it contains a NUL byte; nothing was sent")
	errLongLine       = smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message refused: a line is longer than 998 octets in the header, or in a signed or encrypted part that cannot be re-encoded (RFC 5322); nothing was sent")
	errLongBodyLine   = smtpErr(554, smtp.EnhancedCode{5, 6, 0}, "Message refused: a line is longer than 1 MiB; nothing was sent")
	errHeaderTooBig   = smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "Message refused: its header section is too large (over 100 KiB or 1000 fields)")
	errNoFrom         = smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "Message refused: it has no From: header; set one of your own addresses as sender")
	errNullSender     = smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "An empty sender <> is not accepted on submission; send as one of your own addresses")
	errLongCommand    = smtpErr(500, smtp.EnhancedCode{5, 5, 2}, "Command line too long: at most 512 octets (RFC 5321 4.5.3.1.4)")
	errTooManyErrors  = smtpErr(421, smtp.EnhancedCode{4, 7, 0}, "Too many errors in this session; closing the connection")
	errShuttingDown   = smtpErr(421, smtp.EnhancedCode{4, 3, 2}, "The relay is shutting down; nothing was sent, try again in a moment")
	errTempLocal      = smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "Temporary local problem; nothing was sent; please try again later")
	errPolicyDown     = smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "The confidentiality rules cannot be checked right now; nothing was sent; please try again later")
	errStorageFull    = smtpErr(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage; nothing was sent; please try again later")
	// 421: the rest of the message is still on its way and cannot be told
	// from commands, so the connection is closed after this reply.
	errDataDeadline = smtpErr(421, smtp.EnhancedCode{4, 4, 2}, "The message took too long to arrive (the time allowed is the idle timeout plus the size limit at 64 KiB a second); nothing was sent; closing the connection, please try again")
	errDataIdle     = smtpErr(421, smtp.EnhancedCode{4, 4, 2}, "Nothing more of the message arrived within the idle timeout; nothing was sent; closing the connection, please try again")
)

// errNotPlain refuses an address holding a character that mail systems
// would change or drop (addr.Strict), shown as [U+XXXX]: the therapist
// cannot see an invisible one. where is "" or " in the From: header".
func errNotPlain(code int, enh smtp.EnhancedCode, where string, e *addr.NotPlainError) *smtp.SMTPError {
	return smtpErr(code, enh, fmt.Sprintf("<%s>%s holds %s; mail systems would change or drop it, so the mail could reach someone else or no one: type the address plainly and send again",
		addr.Escape(textutil.OneLine(e.Address)), where, e.Char()))
}

// reply maps any error to the SMTP reply the client gets, logging internal
// causes (never sent to the client) with the session's logger.
func reply(ctx context.Context, log *slog.Logger, stage string, err error) error {
	if err == nil {
		return nil
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	var refusal *rules.Refusal
	if errors.As(err, &refusal) {
		if refusal.Malformed {
			// Sending it again as it is cannot help: a 4xx would be retried for ever.
			return smtpErr(554, smtp.EnhancedCode{5, 6, 0}, textutil.OneLine(refusal.Reason))
		}
		return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, textutil.OneLine(refusal.Reason))
	}
	if errors.Is(err, smtp.ErrDataTooLarge) {
		return errTooBig
	}
	if errors.Is(err, errShutdown) {
		return errShuttingDown
	}
	if isStorageFull(err) {
		log.ErrorContext(ctx, "storage full", "stage", stage, "err", err)
		return errStorageFull
	}
	if errors.Is(err, rules.ErrUnavailable) {
		log.ErrorContext(ctx, "policy unavailable", "stage", stage, "err", err)
		return errPolicyDown
	}
	if errors.Is(err, rules.ErrLineTooLong) {
		return errLongLine
	}
	if errors.Is(err, smtp.ErrTooLongLine) {
		return errLongBodyLine
	}
	if errors.Is(err, smtp.ErrDataReset) || errors.Is(err, os.ErrDeadlineExceeded) {
		log.InfoContext(ctx, "transfer aborted", "stage", stage, "err", err)
		return errTempLocal
	}
	log.ErrorContext(ctx, "temporary failure", "stage", stage, "err", err)
	return errTempLocal
}

func isStorageFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

var errShutdown = errors.New("relay shutting down")
