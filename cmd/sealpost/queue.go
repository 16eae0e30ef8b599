package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/relay/queue"
)

func init() {
	register(&command{name: "queue list", args: "[--json]", summary: "show queued messages", run: runQueueList})
	register(&command{name: "queue retry", args: "ID | --all", summary: "try a queued message (or every one) again now", run: runQueueRetry})
	register(&command{name: "queue drop", args: "ID", summary: "remove a queued message for good (recorded in the archive)", run: runQueueAct("drop")})
}

func runQueueList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	asJSON := fs.Bool("json", false, "machine-readable output")
	_, cfg, err := c.start(fs, args, noArgs)
	if err != nil {
		return err
	}
	var list []queue.Message
	if ctl, err := queue.DialControl(cfg.ControlPath()); err == nil {
		if list, err = ctl.Queue(); err != nil {
			return err
		}
	} else {
		oq, err := queue.OpenOffline(cfg.SpoolDir())
		if err != nil {
			return err
		}
		list = oq.List()
		oq.Close()
	}
	return printList(c, *asJSON, list, "The queue is empty.", "ID\tACCOUNT\tRECEIVED\tSIZE\tTRIES\tNEXT TRY\tPENDING\tLAST ERROR", func(m queue.Message) string {
		acct := m.Account
		if m.Notice {
			acct += " (notice)"
		}
		next := m.NextAttempt.Local().Format(time.DateTime)
		if !m.HeldUntil.IsZero() {
			next = "held until " + m.HeldUntil.Local().Format(time.DateTime)
		}
		return fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%s\t%d\t%s", m.ID, acct, m.Received.Local().Format(time.DateTime), m.Size,
			m.Attempts, next, m.Pending, m.LastError)
	})
}

func runQueueAct(action string) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		pos, cfg, err := c.start(c.flags(), args, oneArg("needs one queue ID (see sealpost queue list)"))
		if err != nil {
			return err
		}
		var id string
		who := commandWho("")
		if ctl, err := queue.DialControl(cfg.ControlPath()); err == nil {
			// The relay records the activity where it acts.
			if action == "retry" {
				id, err = ctl.Retry(pos[0], who)
			} else {
				id, err = ctl.Drop(pos[0], who)
			}
			if err != nil {
				return err
			}
		} else if errors.Is(err, queue.ErrNotRunning) {
			oq, err := queue.OpenOffline(cfg.SpoolDir())
			if err != nil {
				return err
			}
			defer oq.Close()
			if action == "retry" {
				id, err = oq.Retry(pos[0])
			} else {
				id, err = oq.Drop(pos[0], func(events []archive.Event) error { return recordOffline(ctx, cfg, events) })
			}
			if err != nil {
				return err
			}
			noteCommand(ctx, cfg, c.stderr, commandChange{what: "queue-" + action, object: id})
		} else {
			return err
		}
		verb := map[string]string{"retry": "will be tried again now", "drop": "dropped"}[action]
		fmt.Fprintf(c.stdout, "%s %s\n", id, verb)
		return nil
	}
}

// runQueueRetry is `queue retry ID` or, after the provider was fixed,
// `queue retry --all`.
func runQueueRetry(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	all := fs.Bool("all", false, "every queued message")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if !*all {
		return runQueueAct("retry")(ctx, c, args)
	}
	if len(pos) > 0 {
		return usagef("takes an ID or --all, not both")
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	var list []queue.Message
	var retry func(id string) (string, error)
	var offline []commandChange // retried with no relay running
	if ctl, err := queue.DialControl(cfg.ControlPath()); err == nil {
		if list, err = ctl.Queue(); err != nil {
			return err
		}
		who := commandWho("")
		retry = func(id string) (string, error) { return ctl.Retry(id, who) }
	} else if errors.Is(err, queue.ErrNotRunning) {
		oq, err := queue.OpenOffline(cfg.SpoolDir())
		if err != nil {
			return err
		}
		defer oq.Close()
		list = oq.List()
		retry = func(id string) (string, error) {
			id, err := oq.Retry(id)
			if err == nil {
				offline = append(offline, commandChange{what: "queue-retry", object: id})
			}
			return id, err
		}
		// The relay records what it retries; offline, the command does,
		// with the archive opened once.
		defer func() { noteCommand(ctx, cfg, c.stderr, offline...) }()
	} else {
		return err
	}
	n := 0
	for _, m := range list {
		// A message delivered or dropped since the listing is no longer there.
		if _, err := retry(m.ID); err == nil {
			n++
		} else if !strings.Contains(err.Error(), "no such message") {
			return fmt.Errorf("%s: %w", m.ID, err)
		}
	}
	fmt.Fprintf(c.stdout, "%d message(s) will be tried again now.\n", n)
	return nil
}

// recordOffline writes a dropped message's outcomes and drop into the
// archive when no relay is running.
func recordOffline(ctx context.Context, cfg *config.Config, events []archive.Event) error {
	a, _, err := openArchive(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer a.Close()
	for _, ev := range events {
		if err := a.RecordEvent(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}
