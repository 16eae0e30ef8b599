package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

func init() {
	register(&command{name: "consent add", args: "ADDRESS|--domain DOMAIN --evidence TEXT [--kind client|professional] [--date YYYY-MM-DD] [--expires YYYY-MM-DD] [--name TEXT] [--prefer clear] [--no-hold] [--by WHO]",
		summary: "record a client's written consent to unencrypted email, or (--kind professional) a clinician or business associate who gets it in clear", run: runConsentAdd})
	register(&command{name: "consent revoke", args: "ADDRESS|--domain DOMAIN [--kind client|professional] [--reason TEXT] [--by WHO]",
		summary: "record that a client withdrew consent, or that a professional recipient is one no longer", run: runConsentRevoke})
	register(&command{name: "consent list", args: "[--all] [--json] [--kind client|professional]",
		summary: "show who has consented or has a passphrase for sealed PDFs, and the professional recipients apart (--all: revoked and expired too)", run: runConsentList})
	register(&command{name: "consent import", args: "FILE.csv [--by WHO]",
		summary: "record consents from CSV (address,name,signed,evidence,expires[,passphrase]); all or nothing", run: runConsentImport})
}

func openRegistry(cfg *config.Config) (*rules.Registry, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	return openRegistryStore(cfg)
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

// The kinds of recipient consent add, revoke and list take: clients, and
// professionals (another clinician, a business associate), who are kept
// apart from clients everywhere.
const (
	kindClient       = "client"
	kindProfessional = "professional"
)

func checkKind(kind string) error {
	if kind != kindClient && kind != kindProfessional {
		return usagef("--kind is %s (the default) or %s, not %q", kindClient, kindProfessional, kind)
	}
	return nil
}

func runConsentAdd(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	evidence := fs.String("evidence", "", "which form the client signed (or which agreement: a BAA, a referral) and where the signed copy is kept (required)")
	date := fs.String("date", "", "the date it was signed, YYYY-MM-DD (default: today)")
	expires := fs.String("expires", "", "the last day it holds, YYYY-MM-DD (default: no expiry)")
	name := fs.String("name", "", "the client's name or chart id; for a professional, who they are")
	prefer := fs.String("prefer", "", `"clear": the client asked for clear email although a passphrase for sealed PDFs is on file`)
	noHold := fs.Bool("no-hold", false, "the client's treatment plan allows contact at any time: mail to them is never held outside office hours")
	kind := fs.String("kind", kindClient, "client, or professional: another clinician or a business associate (not a client), who gets email in clear")
	domain := fs.String("domain", "", "with --kind professional: every address of this domain")
	by := fs.String("by", "", "who records this (default: the user running the command)")
	pos, cfg, err := c.start(fs, args, argCount{0, 1, "needs one ADDRESS (or, with --kind professional, --domain DOMAIN)"}, func() error {
		if err := checkKind(*kind); err != nil {
			return err
		}
		if *evidence == "" {
			return usagef("--evidence is required: say which form the client signed (or which agreement) and where the signed copy is kept")
		}
		if *prefer != "" && *prefer != record.PreferClear {
			return usagef("--prefer takes only %q", record.PreferClear)
		}
		if *noHold && *kind == kindProfessional {
			return usagef("--no-hold is for a client: a professional's mail is held as a colleague's is not")
		}
		if *domain != "" && *kind != kindProfessional {
			return usagef("--domain is for --kind professional: a client's consent is their own address's")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if (len(pos) == 1) == (*domain != "") {
		return usagef("needs one ADDRESS, or --domain DOMAIN with --kind professional")
	}
	if *date == "" {
		*date = time.Now().Format("2006-01-02")
	}
	ev := record.ConsentEvent{Client: *name, Addresses: pos, Domain: *domain, Signed: *date, Evidence: *evidence, Expires: *expires,
		Prefer: *prefer, NoHold: *noHold, RecordedBy: recorder(*by)}
	if *kind == kindProfessional {
		return withRegistry(cfg, func(reg *rules.Registry) error { return addProfessional(ctx, c, cfg, reg, ev) })
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		ev, err := reg.Add(ctx, ev)
		if err != nil {
			return err
		}
		until := "no expiry"
		if ev.Expires != "" {
			until = "until " + ev.Expires
		}
		fmt.Fprintf(c.stdout, "Recorded consent #%d: %s may receive unencrypted email (signed %s, %s).\n", ev.ID, ev.Addresses[0], ev.Signed, until)
		noteCommand(ctx, cfg, c.stderr, commandChange{what: consentWhat(ev), object: strconv.FormatInt(ev.ID, 10), addresses: ev.Addresses, by: ev.RecordedBy})
		if ev.Prefer == record.PreferClear {
			fmt.Fprintln(c.stdout, "The client prefers clear email: they get it in clear even while a passphrase for sealed PDFs is on file.")
		}
		if ev.NoHold {
			fmt.Fprintln(c.stdout, "Mail to this client is never held outside office hours.")
		}
		return nil
	})
}

// addProfessional records a professional recipient and says what follows:
// clear email unless they have a key, and which clients on file it covers
// too (a client at a professional domain is decided as a professional).
func addProfessional(ctx context.Context, c *cli, cfg *config.Config, reg *rules.Registry, ev record.ConsentEvent) error {
	ev, err := reg.AddProfessional(ctx, ev)
	if err != nil {
		return err
	}
	noteCommand(ctx, cfg, c.stderr, professionalChange("professional-recorded", ev))
	who := ev.Domain
	if who == "" {
		who = ev.Addresses[0]
	} else {
		who = "every address at " + who
	}
	until := "no expiry"
	if ev.Expires != "" {
		until = "until " + ev.Expires
	}
	fmt.Fprintf(c.stdout, "Recorded professional recipient #%d: %s gets email in clear, with the notice (%s, signed %s, %s).\n", ev.ID, who, ev.Evidence, ev.Signed, until)
	fmt.Fprintln(c.stdout, "A professional with an OpenPGP key in the keyring gets encrypted email instead; the content rules apply to clear copies.")
	if ev.Domain == "" {
		return nil
	}
	clients, err := reg.List(ctx, false, time.Now())
	if err != nil {
		return err
	}
	for _, e := range clients {
		if strings.HasSuffix(e.Address, "@"+ev.Domain) {
			fmt.Fprintf(c.stderr, "Note: %s is on file as a client; from now on it is decided as a professional recipient (in clear) before its passphrase or consent.\n", e.Address)
		}
	}
	return nil
}

func runConsentRevoke(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	reason := fs.String("reason", "", "why the consent or agreement was withdrawn")
	kind := fs.String("kind", "", "client or professional: which to withdraw when an address is on file as both")
	domain := fs.String("domain", "", "a professional domain's entry (--kind professional)")
	by := fs.String("by", "", "who records this (default: the user running the command)")
	pos, cfg, err := c.start(fs, args, argCount{0, 1, "needs one ADDRESS, or --domain DOMAIN"}, func() error {
		if *kind != "" {
			return checkKind(*kind)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if (len(pos) == 1) == (*domain != "") || *domain != "" && *kind == kindClient {
		return usagef("needs one ADDRESS, or --domain DOMAIN (a professional domain's entry)")
	}
	if *domain != "" {
		*kind = kindProfessional
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		if *kind == "" {
			st, err := reg.Current(ctx, pos[0], time.Now())
			if err != nil {
				return err
			}
			client, pro := st.State != rules.ConsentNone, st.ProfessionalState != rules.ConsentNone
			switch {
			case client && pro:
				return usagef("%s is on file both as a client and as a professional recipient: say which with --kind client or --kind professional", st.Address)
			case pro:
				*kind = kindProfessional
			default:
				*kind = kindClient
			}
		}
		if *kind == kindProfessional {
			address := ""
			if len(pos) == 1 {
				address = pos[0]
			}
			ev, err := reg.RevokeProfessional(ctx, address, *domain, *reason, recorder(*by))
			if err != nil {
				return err
			}
			noteCommand(ctx, cfg, c.stderr, professionalChange("professional-revoked", ev))
			who := ev.Domain
			if who == "" {
				who = ev.Addresses[0]
			} else {
				who = "every address at " + who + " (but those on file on their own)"
			}
			fmt.Fprintf(c.stdout, "Withdrawn (#%d): %s is no longer a professional recipient; a running relay refuses it from the next message on, unless a key or a consent is on file.\n", ev.ID, who)
			return nil
		}
		ev, err := reg.Revoke(ctx, pos[0], *reason, recorder(*by))
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Revoked (#%d): %s gets no more unencrypted email; a running relay refuses it from the next message on.\n", ev.ID, ev.Addresses[0])
		noteCommand(ctx, cfg, c.stderr, commandChange{what: "consent-revoked", object: strconv.FormatInt(ev.ID, 10), addresses: ev.Addresses, by: ev.RecordedBy})
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
	all := fs.Bool("all", false, "include revoked and expired consents and agreements, and removed passphrases")
	asJSON := fs.Bool("json", false, "machine-readable output: the clients, or with --kind professional the professionals")
	kind := fs.String("kind", "", "client or professional: only those (default: clients, then professionals apart; --json: clients)")
	_, cfg, err := c.start(fs, args, noArgs, func() error {
		if *kind != "" {
			return checkKind(*kind)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		if *kind != kindProfessional {
			list, err := consentList(ctx, reg, *all, time.Now())
			if err != nil {
				return err
			}
			err = printList(c, *asJSON, list, "No consents or passphrases on file.", "ADDRESS\tCLIENT\tCONSENT\tSIGNED\tEXPIRES\tSEALED\tEVIDENCE", func(e consentListEntry) string {
				state := string(e.State)
				if e.Revoked != nil {
					state += " " + e.Revoked.Local().Format("2006-01-02")
				}
				if e.NoHold && e.State == rules.ConsentActive {
					state += ", never held"
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", e.Address, orDash(e.Client), state, orDash(e.Signed), orDash(e.Expires), sealedColumn(e), orDash(e.Evidence))
			})
			if err != nil || *kind == kindClient || *asJSON {
				return err
			}
		}
		pros, err := reg.ListProfessionals(ctx, *all, time.Now())
		if err != nil {
			return err
		}
		if *kind == "" {
			if len(pros) == 0 {
				return nil
			}
			fmt.Fprintln(c.stdout, "\nProfessional recipients (not clients; sealpost consent list --kind professional):")
		}
		return printList(c, *asJSON, pros, "No professional recipients on file.", "ADDRESS OR DOMAIN\tWHO\tSTATE\tSIGNED\tEXPIRES\tEVIDENCE", func(e rules.ProfessionalEntry) string {
			target := e.Address
			if e.Domain != "" {
				target = "@" + e.Domain + " (every address)"
			}
			state := string(e.State)
			if e.Revoked != nil {
				state += " " + e.Revoked.Local().Format("2006-01-02")
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", target, orDash(e.Name), state, orDash(e.Signed), orDash(e.Expires), orDash(e.Evidence))
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
		// The file's name stays out: the record's header is in clear, and
		// a file may be named after a client.
		noteCommand(ctx, cfg, c.stderr, commandChange{what: "consents-imported", object: fmt.Sprintf("%d consents", n), by: recorder(*by)})
		if csvHasColumn(pos[0], "passphrase") {
			fmt.Fprintf(c.stdout, "%s holds clients' passphrases: delete it now (shred -u %s); the registry keeps them encrypted.\n", pos[0], pos[0])
		}
		return nil
	})
}

// consentWhat names a client's consent for the activity log, with what it
// changes besides clear email: an auditor reading the log sees that mail to
// the client goes in clear despite a passphrase, or is never held.
func consentWhat(ev record.ConsentEvent) string {
	what := "consent-recorded"
	if ev.Prefer == record.PreferClear {
		what += "-prefer-clear"
	}
	if ev.NoHold {
		what += "-no-hold"
	}
	return what
}

// professionalChange is a professional entry's change for the activity
// log; a domain's entry names the domain, which is no client's.
func professionalChange(what string, ev record.ConsentEvent) commandChange {
	object := strconv.FormatInt(ev.ID, 10)
	if ev.Domain != "" {
		object += " (@" + ev.Domain + ")"
	}
	return commandChange{what: what, object: object, addresses: ev.Addresses, by: ev.RecordedBy}
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
