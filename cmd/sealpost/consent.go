package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

func init() {
	register(&command{name: "consent add", args: "ADDRESS --evidence TEXT [--date YYYY-MM-DD] [--expires YYYY-MM-DD] [--name TEXT] [--prefer clear] [--by WHO]",
		summary: "record a client's written consent to unencrypted email", run: runConsentAdd})
	register(&command{name: "consent revoke", args: "ADDRESS [--reason TEXT] [--by WHO]",
		summary: "record that a client withdrew consent", run: runConsentRevoke})
	register(&command{name: "consent list", args: "[--all] [--json]",
		summary: "show who has consented or has a passphrase for sealed PDFs (--all: revoked and expired too)", run: runConsentList})
	register(&command{name: "consent import", args: "FILE.csv [--by WHO]",
		summary: "record consents from CSV (address,name,signed,evidence,expires[,passphrase]); all or nothing", run: runConsentImport})
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
	keepDataDirOwner(cfg)
	defer keepDataDirOwner(cfg)
	defer reg.Close()
	return f(reg)
}

func runConsentAdd(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	evidence := fs.String("evidence", "", "which form the client signed and where the signed copy is kept (required)")
	date := fs.String("date", "", "the date the client signed, YYYY-MM-DD (default: today)")
	expires := fs.String("expires", "", "the last day the consent holds, YYYY-MM-DD (default: no expiry)")
	name := fs.String("name", "", "the client's name or chart id")
	prefer := fs.String("prefer", "", `"clear": the client asked for clear email although a passphrase for sealed PDFs is on file`)
	by := fs.String("by", "", "who records this (default: the user running the command)")
	pos, cfg, err := c.start(fs, args, oneArg("needs one ADDRESS"), func() error {
		if *evidence == "" {
			return usagef("--evidence is required: say which form the client signed and where the signed copy is kept")
		}
		if *prefer != "" && *prefer != record.PreferClear {
			return usagef("--prefer takes only %q", record.PreferClear)
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
		ev, err := reg.Add(ctx, record.ConsentEvent{Client: *name, Addresses: pos, Signed: *date, Evidence: *evidence, Expires: *expires,
			Prefer: *prefer, RecordedBy: recorder(*by)})
		if err != nil {
			return err
		}
		until := "no expiry"
		if ev.Expires != "" {
			until = "until " + ev.Expires
		}
		fmt.Fprintf(c.stdout, "Recorded consent #%d: %s may receive unencrypted email (signed %s, %s).\n", ev.ID, ev.Addresses[0], ev.Signed, until)
		if ev.Prefer == record.PreferClear {
			fmt.Fprintln(c.stdout, "The client prefers clear email: they get it in clear even while a passphrase for sealed PDFs is on file.")
		}
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

// consentListEntry is a line of `consent list`: the registry's entry and
// whether the client's mail goes as a sealed PDF; never the passphrase.
type consentListEntry struct {
	rules.ConsentEntry
	// Sealed: a passphrase is on file and no active consent asks for clear email.
	Sealed bool `json:"sealed"`
}

func runConsentList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	all := fs.Bool("all", false, "include revoked and expired consents, and removed passphrases")
	asJSON := fs.Bool("json", false, "machine-readable output")
	_, cfg, err := c.start(fs, args, noArgs)
	if err != nil {
		return err
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		list, err := consentList(ctx, reg, *all, time.Now())
		if err != nil {
			return err
		}
		return printList(c, *asJSON, list, "No consents or passphrases on file.", "ADDRESS\tCLIENT\tCONSENT\tSIGNED\tEXPIRES\tSEALED\tEVIDENCE", func(e consentListEntry) string {
			state := string(e.State)
			if e.Revoked != nil {
				state += " " + e.Revoked.Local().Format("2006-01-02")
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", e.Address, orDash(e.Client), state, orDash(e.Signed), orDash(e.Expires), sealedColumn(e), orDash(e.Evidence))
		})
	})
}

// consentList is the registry's list with what decides sealing spelled out.
func consentList(ctx context.Context, reg *rules.Registry, all bool, now time.Time) ([]consentListEntry, error) {
	entries, err := reg.List(ctx, all, now)
	if err != nil {
		return nil, err
	}
	out := make([]consentListEntry, 0, len(entries))
	for _, e := range entries {
		prefersClear := e.State == rules.ConsentActive && e.Prefer == record.PreferClear
		out = append(out, consentListEntry{ConsentEntry: e, Sealed: !e.PassphraseSet.IsZero() && !prefersClear})
	}
	return out, nil
}

func sealedColumn(e consentListEntry) string {
	switch {
	case e.PassphraseSet.IsZero():
		return "no"
	case e.Sealed:
		return "yes, set " + e.PassphraseSet.Local().Format("2006-01-02")
	default:
		return "no: prefers clear (passphrase set " + e.PassphraseSet.Local().Format("2006-01-02") + ")"
	}
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
		if csvHasColumn(pos[0], "passphrase") {
			fmt.Fprintf(c.stdout, "%s holds clients' passphrases: delete it now (shred -u %s); the registry keeps them encrypted.\n", pos[0], pos[0])
		}
		return nil
	})
}

// csvHasColumn says whether the CSV file's header row names the column.
func csvHasColumn(path, column string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	header, err := csv.NewReader(f).Read()
	if err != nil {
		return false
	}
	for _, h := range header {
		if strings.EqualFold(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")), column) {
			return true
		}
	}
	return false
}
