package provider

import (
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/internal/textutil"
)

// transaction sends one copy over an open connection. With a provider that
// offers PIPELINING (RFC 2920) MAIL, every RCPT and DATA go out in one write
// and their replies are read together, as Postfix does: under load each
// round trip waits for both ends to be scheduled, and four per message
// instead of two leave deliveries far behind acceptance.
//
// healthy says whether the connection may be reused. stale says MAIL got no
// reply at all, or 421: nothing was sent, and a connection kept open may
// just have been closed by the provider meanwhile.
func (c *client) transaction(j *Job) (out []Outcome, healthy, stale bool) {
	from, rcpts, err := j.wireAddresses()
	if err != nil {
		return allOutcomes(j, err, true), true, false
	}
	// The copy is opened before anything is sent: DATA may go out with MAIL.
	body, err := j.Open()
	if err != nil {
		return allOutcomes(j, fmt.Errorf("read spooled copy: %w", err), false), true, false
	}
	defer body.Close()
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	defer c.conn.SetDeadline(time.Time{})

	mail := "MAIL FROM:<" + from + ">"
	if c.eightBit {
		mail += " BODY=8BITMIME"
	}
	cmds := []string{mail}
	for _, r := range rcpts {
		cmds = append(cmds, "RCPT TO:<"+r+">")
	}
	cmds = append(cmds, "DATA")
	expect := func(i int) int {
		switch i {
		case 0:
			return 250
		case len(cmds) - 1:
			return 354
		}
		return 25 // 250 or 251
	}

	// replies[i] is the provider's answer to cmds[i] (nil: accepted). Without
	// PIPELINING a command goes out only when it can still matter: no RCPT
	// after a refused MAIL, no DATA without a recipient.
	var replies []error
	if c.pipelining {
		if err := c.send(cmds...); err != nil {
			return allOutcomes(j, err, false), false, true
		}
	}
	for i := range cmds {
		if !c.pipelining {
			if i > 0 && replies[0] != nil || i == len(cmds)-1 && !anyAccepted(replies[1:]) {
				break
			}
			if err := c.send(cmds[i]); err != nil {
				return allOutcomes(j, err, false), false, i == 0
			}
		}
		_, _, err := c.reply(expect(i))
		if err != nil && (!isSMTPReply(err) || replyCode(err) == 421) {
			// The connection is gone, or going (421): no body was sent,
			// nothing delivered.
			return allOutcomes(j, err, false), false, i == 0
		}
		replies = append(replies, err)
	}
	// A provider that says 354 although it refused MAIL or every RCPT gets
	// an empty message, which it refuses in turn: a pipelined DATA cannot be
	// taken back.
	dataErr := errNoRecipient
	if len(replies) == len(cmds) {
		dataErr = replies[len(cmds)-1]
	}
	if mailErr := replies[0]; mailErr != nil {
		if dataErr == nil {
			c.endEmptyData()
		}
		return allOutcomes(j, mailErr, isPermanent(mailErr)), c.reset() == nil, false
	}
	out = make([]Outcome, len(j.Recipients))
	var accepted []int
	for i, r := range j.Recipients {
		out[i] = Outcome{Recipient: r}
		if err := replies[1+i]; err != nil {
			out[i].Err, out[i].Reply, out[i].Permanent = err, describe(err), isPermanent(err)
		} else {
			accepted = append(accepted, i)
		}
	}
	if len(accepted) == 0 {
		if dataErr == nil {
			c.endEmptyData()
		}
		return out, c.reset() == nil, false
	}
	fail := func(err error) []Outcome {
		for _, i := range accepted {
			out[i].Err, out[i].Reply, out[i].Permanent = err, describe(err), isPermanent(err)
		}
		return out
	}
	if dataErr != nil {
		return fail(dataErr), c.reset() == nil, false
	}
	if err := sendBody(c.conn, body, c.timeout); err != nil {
		return fail(err), false, false
	}
	c.conn.SetDeadline(time.Now().Add(c.dataTimeout))
	_, msg, err := c.reply(250)
	if err != nil {
		return fail(err), isSMTPReply(err), false
	}
	for _, i := range accepted {
		out[i].Reply = "250 " + textutil.OneLine(msg)
	}
	return out, true, false
}

var errNoRecipient = errors.New("no recipient accepted")

func anyAccepted(replies []error) bool {
	for _, err := range replies {
		if err == nil {
			return true
		}
	}
	return false
}

// reset ends a transaction that did not send a message.
func (c *client) reset() error {
	if err := c.send("RSET"); err != nil {
		return err
	}
	_, _, err := c.reply(250)
	return err
}

// endEmptyData ends a DATA the provider should have refused.
func (c *client) endEmptyData() {
	if c.send(".") == nil {
		c.reply(0)
	}
}
