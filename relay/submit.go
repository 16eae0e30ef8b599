package relay

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/relay/submission"
)

// errUnknownAccount is returned by Submit for an account not in the config.
var errUnknownAccount = errors.New("no such account")

// Submit sends a message sealpost writes itself (an acknowledgement to a
// client) as one of account's addresses, along the path a therapist's
// message takes: each recipient is decided (a refused one refuses the
// message, with its reason), the notice and encryption are applied, and
// the message is archived and queued before Submit returns its id. The
// message is marked Auto-Submitted: auto-replied.
func (s *Server) Submit(ctx context.Context, account, from string, to []string, msg io.Reader) (string, error) {
	if s.closing.Load() {
		return "", submission.ErrShuttingDown
	}
	acct := s.smtp.Account(account)
	if acct == nil {
		return "", fmt.Errorf("%w: %q", errUnknownAccount, account)
	}
	sender, err := addr.Strict(from)
	if err != nil || !acct.Owns(sender) {
		return "", fmt.Errorf("%s is not an address of account %s", from, account)
	}
	log := s.log.With("account", acct.Username, "origin", "sealpost")
	var rcpts []record.Decision
	for _, r := range to {
		n, err := addr.Strict(r)
		if err != nil {
			return "", fmt.Errorf("recipient: %w", err)
		}
		d, err := s.decide(ctx, log, acct.Username, n)
		if err != nil {
			return "", err
		}
		rcpts = append(rcpts, d)
	}
	if len(rcpts) == 0 {
		return "", errors.New("no recipients")
	}
	acc, err := s.accept(ctx, log, submission.Envelope{Account: acct, From: sender, Recipients: rcpts}, msg, true)
	return acc.ID, err
}
