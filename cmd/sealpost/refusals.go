package main

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/pgp"
)

func init() {
	register(&command{name: "refusals show", args: "REF [--address ADDRESS]",
		summary: "what a refusal a therapist quotes (\"ref R7K2QX\") was about, and how to fix it", run: runRefusalsShow})
	register(&command{name: "refusals list", args: "[--since YYYY-MM-DD] [--json]",
		summary: "the refusals since a day (default: today), with their references", run: runRefusalsList})
}

// A refusal's record has its reference, reason code and account in its
// clear header (archive.FindRefusals): these commands need no archive key
// and work beside a running relay. The refused address is kept only as a
// keyed hash; it is named when the registry or the keyring knows it, or
// when the admin gives it (--address).

func runRefusalsShow(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	address := fs.String("address", "", "the recipient the therapist's message named: says whether it is the refused one")
	pos, cfg, err := c.start(fs, args, oneArg("needs the REF from the therapist's error message, e.g. R7K2QX"))
	if err != nil {
		return err
	}
	ref, ok := record.NormalizeRef(pos[0])
	if !ok {
		return usagef("%q is not a refusal's reference: six letters and digits, e.g. R7K2QX", pos[0])
	}
	found, err := archive.FindRefusals(cfg.ArchiveDir(), ref, time.Time{})
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no archive at %s yet: nothing was refused there", cfg.ArchiveDir())
	}
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return fmt.Errorf("no refusal with reference %s in %s (the reference is in the therapist's error message, e.g. \"(ref R7K2QX)\"; a refusal the archive could not record is only in the log: journalctl -u sealpost | grep ref=%s)",
			ref, cfg.ArchiveDir(), ref)
	}
	known, err := knownAddresses(ctx, cfg)
	if err != nil {
		return err
	}
	for i, f := range found {
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		showRefusal(c, f, recipientOf(f, *address, known))
	}
	return nil
}

// recipientOf names a refusal's recipient: the address given, when it is
// the one, else one the registry or keyring knows; "" when none is.
func recipientOf(f archive.RefusalFound, given string, known []string) string {
	if !f.Recipient {
		return ""
	}
	if given != "" && f.Is(given) {
		return given
	}
	for _, a := range known {
		if f.Is(a) {
			return a
		}
	}
	return ""
}

func showRefusal(c *cli, f archive.RefusalFound, rcpt string) {
	out := c.stdout
	fmt.Fprintf(out, "Refusal %s, %s, account %s\n", f.Ref, f.Time.Local().Format("2006-01-02 15:04:05 MST"), orDash(f.Account))
	switch {
	case f.Code == rules.RefusalPartialSend:
		fmt.Fprintln(out, "  The whole message was refused at its end (DATA) because a recipient was refused: nothing was sent to anybody.")
	case !f.Recipient:
		fmt.Fprintln(out, "  The whole message was refused: nothing was sent to anybody.")
	case rcpt != "":
		fmt.Fprintf(out, "  Recipient: %s\n", rcpt)
	default:
		fmt.Fprintln(out, "  Recipient: not in the consent registry or the keyring (the archive keeps addresses only as keyed hashes);")
		fmt.Fprintln(out, "  the therapist's error message names it: sealpost refusals show "+f.Ref+" --address ADDRESS checks it.")
	}
	fmt.Fprintf(out, "  Reason: %s\n", orDash(f.Code))
	fmt.Fprintln(out, "What to do:")
	for _, l := range rules.AdminFix(f.Code, rcpt) {
		fmt.Fprintln(out, "  "+l)
	}
}

// knownAddresses are every address the registry (clients and
// professionals) and the keyring know: a refused recipient is often one
// whose consent was revoked or whose key expired.
func knownAddresses(ctx context.Context, cfg *config.Config) ([]string, error) {
	var out []string
	err := withRegistry(cfg, func(reg *rules.Registry) error {
		clients, err := reg.List(ctx, true, time.Now())
		if err != nil {
			return err
		}
		for _, e := range clients {
			out = append(out, e.Address)
		}
		pros, err := reg.ListProfessionals(ctx, true, time.Now())
		if err != nil {
			return err
		}
		for _, e := range pros {
			if e.Address != "" {
				out = append(out, e.Address)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = withKeyring(cfg, func(k *pgp.Keyring) error {
		keys, err := k.List(ctx)
		if err != nil {
			return err
		}
		for _, key := range keys {
			for _, uid := range key.UserIDs {
				if a, err := mail.ParseAddress(uid); err == nil {
					out = append(out, a.Address)
				} else if strings.Contains(uid, "@") {
					out = append(out, strings.Trim(uid, "<> "))
				}
			}
		}
		return nil
	})
	return out, err
}

// refusalLine is a line of `refusals list`.
type refusalLine struct {
	Time      time.Time `json:"time"`
	Ref       string    `json:"ref"`
	Account   string    `json:"account"`
	Code      string    `json:"code"`
	Recipient string    `json:"recipient,omitempty"` // when the registry or keyring knows it
	Message   bool      `json:"message"`             // the whole message was refused, not one recipient
}

func runRefusalsList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	since := fs.String("since", "", "the first day, YYYY-MM-DD (default: today)")
	asJSON := fs.Bool("json", false, "machine-readable output")
	var from time.Time
	_, cfg, err := c.start(fs, args, noArgs, func() error {
		day := time.Now().Format("2006-01-02")
		if *since != "" {
			day = *since
		}
		var err error
		if from, err = time.ParseInLocation("2006-01-02", day, time.Local); err != nil {
			return usagef("--since takes a day, YYYY-MM-DD, not %q", *since)
		}
		return nil
	})
	if err != nil {
		return err
	}
	found, err := archive.FindRefusals(cfg.ArchiveDir(), "", from)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	known, err := knownAddresses(ctx, cfg)
	if err != nil {
		return err
	}
	lines := make([]refusalLine, 0, len(found))
	for _, f := range found {
		lines = append(lines, refusalLine{Time: f.Time, Ref: f.Ref, Account: f.Account, Code: f.Code, Recipient: recipientOf(f, "", known), Message: !f.Recipient})
	}
	return printList(c, *asJSON, lines, "No refusals since "+from.Format("2006-01-02")+".", "TIME\tREF\tACCOUNT\tREASON\tRECIPIENT",
		func(l refusalLine) string {
			rcpt := l.Recipient
			switch {
			case l.Message:
				rcpt = "(the whole message)"
			case rcpt == "":
				rcpt = "(not on file)"
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", l.Time.Local().Format("2006-01-02 15:04"), orDash(l.Ref), orDash(l.Account), orDash(l.Code), rcpt)
		})
}
