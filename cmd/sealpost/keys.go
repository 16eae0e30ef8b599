package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/rules/pgp"
)

func init() {
	register(&command{name: "keys import", args: "FILE...", summary: "import recipients' OpenPGP public keys and revocation certificates", run: runKeysImport})
	register(&command{name: "keys list", args: "[--json]", summary: "show the recipients' keys and whether each can be used", run: runKeysList})
	register(&command{name: "keys accept", args: "FINGERPRINT", summary: "use a key a client offered in an Autocrypt header", run: runKeysAccept})
	register(&command{name: "keys remove", args: "FINGERPRINT", summary: "remove a key from the keyring", run: runKeysRemove})
}

func openKeyring(cfg *config.Config) (*pgp.Keyring, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	return pgp.OpenKeyring(cfg.KeyringPath(), pgp.KeyringOptions{})
}

func runKeysImport(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags(), args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("needs at least one FILE")
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	k, err := openKeyring(cfg)
	if err != nil {
		return err
	}
	defer k.Close()
	for _, path := range pos {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		infos, err := k.Import(ctx, f, "file "+filepath.Base(path))
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, i := range infos {
			state := i.Status
			if i.Detail != "" {
				state += " (" + i.Detail + ")"
			}
			fmt.Fprintf(c.stdout, "%s: %s %s: %s\n", path, i.Fingerprint, strings.Join(i.UserIDs, ", "), state)
		}
	}
	return nil
}

func runKeysList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	asJSON := fs.Bool("json", false, "machine-readable output")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("takes no arguments")
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	k, err := openKeyring(cfg)
	if err != nil {
		return err
	}
	defer k.Close()
	list, err := k.List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if list == nil {
			list = []pgp.KeyInfo{}
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(c.stdout, "The keyring is empty.")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tUSER IDS\tALGORITHM\tEXPIRES\tSTATUS\tSOURCE")
	for _, i := range list {
		exp := "-"
		if i.Expires != nil {
			exp = i.Expires.Format("2006-01-02")
		}
		st := i.Status
		if i.Detail != "" {
			st += " (" + i.Detail + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.Fingerprint, strings.Join(i.UserIDs, ", "), i.Algorithm, exp, st, i.Source)
	}
	return tw.Flush()
}

func runKeysRemove(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags(), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("needs one FINGERPRINT (see sealpost keys list)")
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	k, err := openKeyring(cfg)
	if err != nil {
		return err
	}
	defer k.Close()
	if err := k.Remove(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Removed %s. Its addresses now need consent or another key.\n", strings.ToUpper(pos[0]))
	return nil
}

func runKeysAccept(ctx context.Context, c *cli, args []string) error {
	pos, err := c.parse(c.flags(), args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("needs one FINGERPRINT (sealpost keys list shows proposed keys)")
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	k, err := openKeyring(cfg)
	if err != nil {
		return err
	}
	defer k.Close()
	if err := k.Accept(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Accepted %s: mail to its addresses is encrypted to it from now on.\n", strings.ToUpper(pos[0]))
	return nil
}
