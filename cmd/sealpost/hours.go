package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/hours"
)

func init() {
	register(&command{name: "hours show", args: "[--account NAME]",
		summary: "office hours: open now or not, the next windows, absences, and the answer date for a message arriving now", run: runHoursShow})
}

func runHoursShow(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	account := fs.String("account", "", "the account (default: every account with office hours)")
	_, cfg, err := c.start(fs, args, noArgs)
	if err != nil {
		return err
	}
	all := cfg.OfficeHours()
	var names []string
	for _, a := range cfg.Accounts {
		if *account == "" || a.Username == *account {
			names = append(names, a.Username)
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("no account %q in %s", *account, cfg.Path)
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		for i, name := range names {
			if i > 0 {
				fmt.Fprintln(c.stdout)
			}
			oh, ok := all[name]
			if !ok {
				fmt.Fprintf(c.stdout, "%s: no office hours (set windows in [hours] or its [account.hours])\n", name)
				continue
			}
			if err := showHours(ctx, c.stdout, reg, name, oh, clockNow()); err != nil {
				return err
			}
		}
		return nil
	})
}

// upcomingShown is how many open windows hours show lists.
const upcomingShown = 6

func showHours(ctx context.Context, w io.Writer, reg *rules.Registry, account string, oh rules.OfficeHours, now time.Time) error {
	sched, absences, err := withAbsences(ctx, reg, account, oh.Schedule)
	if err != nil {
		return err
	}
	loc := sched.Location
	hold := "no"
	if oh.Hold {
		hold = "yes"
	}
	fmt.Fprintf(w, "%s: office hours in %s; mail to clients held outside them: %s\n", account, loc, hold)
	now = now.In(loc)
	switch next, ok := sched.NextOpening(now); {
	case sched.Open(now):
		fmt.Fprintf(w, "Now (%s): open\n", now.Format("Mon 2 Jan 15:04 MST"))
	case !ok:
		fmt.Fprintf(w, "Now (%s): closed, and not open again within a year\n", now.Format("Mon 2 Jan 15:04 MST"))
	default:
		fmt.Fprintf(w, "Now (%s): closed%s; opens %s\n", now.Format("Mon 2 Jan 15:04 MST"), closedBecause(sched, now), next.In(loc).Format("Mon 2 Jan 15:04 MST"))
	}
	fmt.Fprintln(w, "Next windows:")
	for _, sp := range sched.Upcoming(now, upcomingShown) {
		fmt.Fprintf(w, "  %s-%s\n", sp.Start.In(loc).Format("Mon 2 Jan 15:04"), sp.End.In(loc).Format("15:04 MST"))
	}
	for _, a := range absences {
		if until, _ := hours.ParseDate(a.Until); !until.Before(hours.DateOf(now)) {
			fmt.Fprintf(w, "Away #%d: %s to %s%s\n", a.ID, a.From, a.Until, noteOf(a.Note))
		}
	}
	if oh.Turnaround == (hours.Turnaround{}) {
		fmt.Fprintln(w, "No turnaround set: acknowledgements name no answer date.")
		return nil
	}
	if by, ok := sched.ExpectedReply(now, oh.Turnaround); ok {
		fmt.Fprintf(w, "A client's message arriving now can expect an answer by %s (%s).\n", by.In(loc).Format("Monday 2 January, 15:04 MST"), oh.Turnaround)
	}
	return nil
}

// withAbsences is s with account's absences from the registry.
func withAbsences(ctx context.Context, reg *rules.Registry, account string, s *hours.Schedule) (*hours.Schedule, []rules.Absence, error) {
	list, err := reg.Absences(ctx, account)
	if err != nil {
		return nil, nil, err
	}
	days, err := reg.AbsenceDays(ctx, account, s.Location)
	if err != nil {
		return nil, nil, err
	}
	out := *s
	out.Closures = append(slices.Clone(s.Closures), days)
	return &out, list, nil
}

func closedBecause(s *hours.Schedule, t time.Time) string {
	for _, sp := range s.ClosedAt(t) {
		if sp.Why != "" {
			return " (" + sp.Why + ")"
		}
	}
	return ""
}

func noteOf(note string) string {
	if note == "" {
		return ""
	}
	return " (" + note + ")"
}

// accountNamed is the account called name, or a usage error.
func accountNamed(cfg *config.Config, name string) error {
	for _, a := range cfg.Accounts {
		if a.Username == name {
			return nil
		}
	}
	return fmt.Errorf("no account %q in %s", name, cfg.Path)
}

// checkOfficeHours says, for sealpost check, each account's office hours
// as the relay will keep them, and warns of what would surprise: held
// mail waiting over two weeks, hours that never open, a calendar named by
// URL that serve has not fetched yet.
func checkOfficeHours(cfg *config.Config, now time.Time) []checkResult {
	var out []checkResult
	all := cfg.OfficeHours()
	for _, a := range cfg.Accounts {
		oh, ok := all[a.Username]
		if !ok {
			continue
		}
		what := fmt.Sprintf("office hours of %s in %s", a.Username, oh.Schedule.Location)
		if oh.Hold {
			what += ", mail to clients held outside them"
		}
		next, opens := oh.Schedule.NextOpening(now)
		switch {
		case !opens:
			out = append(out, checkResult{what: what, warn: true, err: errors.New("they do not open within a year: nothing is held, and acknowledgements name no date")})
		case oh.Hold && next.Sub(now) > 14*24*time.Hour:
			out = append(out, checkResult{what: what, warn: true, err: fmt.Errorf("they next open %s: mail to clients sent now waits until then", next.In(oh.Schedule.Location).Format("Mon 2 Jan 2006 15:04"))})
		default:
			out = append(out, checkResult{what: what})
		}
	}
	for _, url := range cfg.CalendarURLs() {
		if _, err := os.Stat(config.CalendarCachePath(cfg.CalendarDir(), url)); err != nil {
			out = append(out, checkResult{what: "holiday calendar " + url, warn: true,
				err: errors.New("not fetched yet: the relay fetches it at start and on SIGHUP; until then its holidays are open days")})
		}
	}
	return out
}
