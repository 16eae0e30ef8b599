package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

func init() {
	register(&command{name: "consent add", args: "ADDRESS --evidence TEXT [--date YYYY-MM-DD] [--expires YYYY-MM-DD] [--name TEXT]",
		summary: "record a client's written consent to unencrypted email", run: runConsentAdd})
	register(&command{name: "consent revoke", args: "ADDRESS [--reason TEXT]",
		summary: "record that a client withdrew consent", run: runConsentRevoke})
	register(&command{name: "consent list", args: "[--all] [--json]",
		summary: "show who has consented (--all: revoked and expired too)", run: runConsentList})
	register(&command{name: "consent import", args: "FILE.csv",
		summary: "record consents from CSV (address,name,signed,evidence,expires); all or nothing", run: runConsentImport})
}

func openRegistry(cfg *config.Config) (*rules.Registry, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	return rules.OpenRegistry(cfg.RegistryPath())
}

// withRegistry runs f with the consent registry open.
func withRegistry(cfg *config.Config, f func(*rules.Registry) error) error {
	reg, err := openRegistry(cfg)
	if err != nil {
		return err
	}
	defer reg.Close()
	return f(reg)
}

// recorder names who ran the command, for the registry's history.
func recorder(by string) string {
	if by != "" {
		return by
	}
	if s := os.Getenv("SUDO_USER"); s != "" {
		return s
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

func runConsentAdd(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	evidence := fs.String("evidence", "", "which form the client signed and where the signed copy is kept (required)")
	date := fs.String("date", "", "the date the client signed, YYYY-MM-DD (default: today)")
	expires := fs.String("expires", "", "the last day the consent holds, YYYY-MM-DD (default: no expiry)")
	name := fs.String("name", "", "the client's name or chart id")
	by := fs.String("by", "", "who records this (default: the user running the command)")
	pos, cfg, err := c.start(fs, args, oneArg("needs one ADDRESS"), func() error {
		if *evidence == "" {
			return usagef("--evidence is required: say which form the client signed and where the signed copy is kept")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if *date == "" {
		*date = time.Now().Format("2006-01-02")
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		ev, err := reg.Add(ctx, record.ConsentEvent{Client: *name, Addresses: pos, Signed: *date, Evidence: *evidence, Expires: *expires, RecordedBy: recorder(*by)})
		if err != nil {
			return err
		}
		until := "no expiry"
		if ev.Expires != "" {
			until = "until " + ev.Expires
		}
		fmt.Fprintf(c.stdout, "Recorded consent #%d: %s may receive unencrypted email (signed %s, %s).\n", ev.ID, ev.Addresses[0], ev.Signed, until)
		return nil
	})
}

func runConsentRevoke(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	reason := fs.String("reason", "", "why the consent was withdrawn")
	by := fs.String("by", "", "who records this (default: the user running the command)")
	pos, cfg, err := c.start(fs, args, oneArg("needs one ADDRESS"))
	if err != nil {
		return err
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		ev, err := reg.Revoke(ctx, pos[0], *reason, recorder(*by))
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Revoked (#%d): %s gets no more unencrypted email; a running relay refuses it from the next message on.\n", ev.ID, ev.Addresses[0])
		return nil
	})
}

func runConsentList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	all := fs.Bool("all", false, "include revoked and expired consents")
	asJSON := fs.Bool("json", false, "machine-readable output")
	_, cfg, err := c.start(fs, args, noArgs)
	if err != nil {
		return err
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		list, err := reg.List(ctx, *all, time.Now())
		if err != nil {
			return err
		}
		return printList(c, *asJSON, list, "No consents on file.", "ADDRESS\tCLIENT\tSTATE\tSIGNED\tEXPIRES\tEVIDENCE", func(e rules.ConsentEntry) string {
			state := string(e.State)
			if e.Revoked != nil {
				state += " " + e.Revoked.Local().Format("2006-01-02")
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", e.Address, e.Client, state, e.Signed, orDash(e.Expires), e.Evidence)
		})
	})
}

func runConsentImport(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	by := fs.String("by", "", "who records this (default: the user running the command)")
	pos, cfg, err := c.start(fs, args, oneArg("needs one FILE.csv"))
	if err != nil {
		return err
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	return withRegistry(cfg, func(reg *rules.Registry) error {
		n, err := reg.Import(ctx, f, recorder(*by))
		var ve *rules.ValidationError
		if errors.As(err, &ve) {
			// Every problem, one per line, so the admin can fix the file at once.
			n := 0
			for _, p := range ve.Problems {
				if p != "nothing was imported" {
					fmt.Fprintf(c.stderr, "%s: %s\n", pos[0], p)
					n++
				}
			}
			return fmt.Errorf("%s: %d problem(s); nothing was imported", pos[0], n)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Imported %d consents from %s.\n", n, pos[0])
		return nil
	})
}
