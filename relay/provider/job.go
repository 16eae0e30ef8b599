package provider

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/textutil"
)

// Job is one copy of a message for some of its recipients.
type Job struct {
	ID string
	// Login is the account's login to the provider; nil for a notice of an
	// account that no longer exists.
	Login      *Login
	From       string // "" for delivery status notifications
	Recipients []string
	Open       func() (io.ReadCloser, error)
}

// Login is how one sealpost account logs in to the provider.
type Login struct {
	// Account is the sealpost account: connections are kept per account.
	Account string
	// Username and Password log in on the account's behalf; no Username,
	// no login.
	Username string
	Password string
	// SASL, when set, logs in instead of the password (OAuth 2.0
	// providers): it is asked for a fresh client for every connection, as
	// the token it carries expires.
	SASL func(ctx context.Context) (sasl.Client, error)
}

// Outcome is what became of one recipient of a job.
type Outcome struct {
	Recipient string
	Err       error  // nil: the provider took it
	Reply     string // the provider's reply, or what went wrong
	Permanent bool   // a 5xx: retrying will not help
}

// Deliverer hands jobs to the provider (Upstream) or into the Outbox.
type Deliverer interface {
	Deliver(ctx context.Context, j *Job) []Outcome
	Close()
}

func allOutcomes(j *Job, err error, permanent bool) []Outcome {
	out := make([]Outcome, len(j.Recipients))
	for i, r := range j.Recipients {
		out[i] = Outcome{Recipient: r, Err: err, Reply: describe(err), Permanent: permanent}
	}
	return out
}

// describe is the one-line text of a reply or failure, as the queue shows
// it and the delivery status notification quotes it.
func describe(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.EnhancedCode == (smtp.EnhancedCode{}) {
		return fmt.Sprintf("%d %s", se.Code, textutil.OneLine(se.Message))
	}
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], textutil.OneLine(se.Message))
	}
	if err == nil {
		return ""
	}
	return textutil.OneLine(err.Error())
}

// wireAddresses are the job's sender and recipients as they go out: in
// the normalised form the relay decided on (addr.Normalize). MAIL and RCPT
// keep only that form, so this changes nothing but a spool file that holds
// the addresses as the client typed them.
func (j *Job) wireAddresses() (from string, rcpts []string, err error) {
	// The errors leave the address out: they reach the log.
	if j.From != "" {
		if from, err = addr.Normalize(j.From); err != nil {
			return "", nil, errors.New("the sender is not a valid address")
		}
	}
	rcpts = make([]string, len(j.Recipients))
	for i, r := range j.Recipients {
		if rcpts[i], err = addr.Normalize(r); err != nil {
			return "", nil, errors.New("a recipient is not a valid address")
		}
	}
	return from, rcpts, nil
}
