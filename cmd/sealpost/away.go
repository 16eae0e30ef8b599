package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/hours"
)

func init() {
	register(&command{name: "away", args: "--account NAME --from YYYY-MM-DD --until YYYY-MM-DD [--note TEXT] [--by WHO]",
		summary: "record days a therapist is away; " + hours.AwayEffect, run: runAway})
	register(&command{name: "away list", args: "[--account NAME] [--json]", summary: "the absences recorded, not cancelled", run: runAwayList})
	register(&command{name: "away cancel", args: "ID --account NAME [--by WHO]", summary: "cancel an absence (recorded, not erased)", run: runAwayCancel})
}

func runAway(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	account := fs.String("account", "", "the therapist's account (required)")
	from := fs.String("from", "", "the first day away, YYYY-MM-DD (required)")
	until := fs.String("until", "", "the last day away, YYYY-MM-DD (required)")
	note := fs.String("note", "", "a note for the admin's list (never sent to clients)")
	by := fs.String("by", "", "who records this (default: the user running the command)")
	_, cfg, err := c.start(fs, args, noArgs, func() error {
		if *account == "" || *from == "" || *until == "" {
			return usagef("--account, --from and --until are required")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := accountNamed(cfg, *account); err != nil {
		return err
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		a, err := reg.AddAbsence(ctx, rules.Absence{Account: *account, From: *from, Until: *until, Note: *note, RecordedBy: recorder(*by)})
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Recorded absence #%d: %s; %s.\n", a.ID, hours.AwaySentence(a.Account, a.From, a.Until), hours.AwayEffect)
		noteCommand(ctx, cfg, c.stderr, commandChange{what: "absence-added", object: absenceObject(a), by: a.RecordedBy})
		if _, ok := cfg.OfficeHours()[*account]; !ok {
			fmt.Fprintf(c.stdout, "%s has no office hours ([hours] windows): nothing is held or dated by it until they are set.\n", a.Account)
		}
		return nil
	})
}

// absenceObject is an absence as the activity log names it, the console's
// wording.
func absenceObject(a rules.Absence) string {
	return fmt.Sprintf("%d (%s, %s to %s)", a.ID, a.Account, a.From, a.Until)
}

func runAwayList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	account := fs.String("account", "", "only this account")
	asJSON := fs.Bool("json", false, "machine-readable output")
	_, cfg, err := c.start(fs, args, noArgs)
	if err != nil {
		return err
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		var list []rules.Absence
		for _, a := range cfg.Accounts {
			if *account != "" && a.Username != *account {
				continue
			}
			as, err := reg.Absences(ctx, a.Username)
			if err != nil {
				return err
			}
			list = append(list, as...)
		}
		return printList(c, *asJSON, list, "No absences recorded.", "ID\tACCOUNT\tFROM\tUNTIL\tNOTE\tRECORDED BY", func(a rules.Absence) string {
			return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s", a.ID, a.Account, a.From, a.Until, a.Note, a.RecordedBy)
		})
	})
}

func runAwayCancel(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	account := fs.String("account", "", "the therapist's account (required)")
	by := fs.String("by", "", "who records this (default: the user running the command)")
	pos, cfg, err := c.start(fs, args, oneArg("needs the absence's ID (sealpost away list)"), func() error {
		if *account == "" {
			return usagef("--account is required")
		}
		return nil
	})
	if err != nil {
		return err
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil {
		return usagef("%q is not an absence's ID (sealpost away list)", pos[0])
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		// Its days, for the activity log as the console words it.
		cancelled := rules.Absence{ID: id, Account: *account}
		if list, err := reg.Absences(ctx, *account); err == nil {
			for _, a := range list {
				if a.ID == id {
					cancelled = a
				}
			}
		}
		if err := reg.CancelAbsence(ctx, *account, id, recorder(*by)); err != nil {
			return err
		}
		noteCommand(ctx, cfg, c.stderr, commandChange{what: "absence-cancelled", object: absenceObject(cancelled), by: recorder(*by)})
		fmt.Fprintf(c.stdout, "Cancelled absence #%d of %s.\n", id, *account)
		return nil
	})
}
