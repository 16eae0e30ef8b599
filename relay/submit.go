package relay

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// ErrUnknownAccount is returned by Submit for an account not in the config.
var ErrUnknownAccount = errors.New("no such account")

// Submit sends a message sealpost writes itself (an acknowledgement to a
// client) as one of account's addresses, along the path a therapist's
// message takes: the policy decides each recipient (a refused one refuses
// the message, with its reason), the notice and encryption are applied, and
// the message is archived and queued before Submit returns its id. The
// message is marked Auto-Submitted: auto-replied.
func (s *Server) Submit(ctx context.Context, account, from string, to []string, msg io.Reader) (string, error) {
	if s.closing.Load() || !s.beginInflight() {
		return "", errShutdown
	}
	defer s.inflight.Done()
	acct := s.accounts.Load().byName[account]
	if acct == nil {
		return "", fmt.Errorf("%w: %q", ErrUnknownAccount, account)
	}
	sender, err := addr.Strict(from)
	if err != nil || !acct.owns(sender) {
		return "", fmt.Errorf("%s is not an address of account %s", from, account)
	}
	var rcpts []record.Decision
	for _, r := range to {
		n, err := addr.Strict(r)
		if err != nil {
			return "", fmt.Errorf("recipient: %w", err)
		}
		d, err := s.cfg.Policy.Decide(ctx, acct.Username, n)
		if err != nil {
			return "", err
		}
		if d.Address == "" {
			d.Address = n
		}
		d.Recipient = d.Address
		if d.Protection == record.Refused {
			if s.cfg.Archive != nil {
				ref := archive.Refusal{Time: s.cfg.Now(), Account: acct.Username, Recipient: d.Address, Reason: d.Reason}
				if err := s.cfg.Archive.RecordRefusal(ctx, ref); err != nil {
					s.log.Error("cannot archive a refusal", "err", err)
				}
			}
			return "", &rules.Refusal{Reason: d.Reason}
		}
		rcpts = append(rcpts, d)
	}
	if len(rcpts) == 0 {
		return "", errors.New("no recipients")
	}
	return s.accept(ctx, s.log.With("account", acct.Username, "origin", "sealpost"), acct, sender, rcpts, msg, true)
}
