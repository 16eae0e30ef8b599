package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/rules/pgp"
)

func init() {
	register(&command{name: "keys import", args: "FILE...", summary: "import recipients' OpenPGP public keys and revocation certificates", run: runKeysImport})
	register(&command{name: "keys list", args: "[--json]", summary: "show the recipients' keys and whether each can be used", run: runKeysList})
	register(&command{name: "keys accept", args: "FINGERPRINT", summary: "use a key a client offered in an Autocrypt header", run: runKeysAccept})
	register(&command{name: "keys remove", args: "FINGERPRINT", summary: "remove a key from the keyring", run: runKeysRemove})
}

// withKeyring runs f with the keyring open.
func withKeyring(cfg *config.Config, f func(*pgp.Keyring) error) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	k, err := openKeyring(cfg, pgp.KeyringOptions{})
	if err != nil {
		return err
	}
	defer k.Close()
	return f(k)
}

// keyState is a key's status with its detail.
func keyState(i pgp.KeyInfo) string {
	if i.Detail != "" {
		return i.Status + " (" + i.Detail + ")"
	}
	return i.Status
}

func runKeysImport(ctx context.Context, c *cli, args []string) error {
	pos, cfg, err := c.start(c.flags(), args, argCount{1, -1, "needs at least one FILE"})
	if err != nil {
		return err
	}
	return withKeyring(cfg, func(k *pgp.Keyring) error {
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
				fmt.Fprintf(c.stdout, "%s: %s %s: %s\n", path, i.Fingerprint, strings.Join(i.UserIDs, ", "), keyState(i))
				noteCommand(ctx, cfg, c.stderr, commandChange{what: "key-imported", object: i.Fingerprint})
			}
		}
		return nil
	})
}

func runKeysList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	asJSON := fs.Bool("json", false, "machine-readable output")
	_, cfg, err := c.start(fs, args, noArgs)
	if err != nil {
		return err
	}
	return withKeyring(cfg, func(k *pgp.Keyring) error {
		list, err := k.List(ctx)
		if err != nil {
			return err
		}
		return printList(c, *asJSON, list, "The keyring is empty.", "FINGERPRINT\tUSER IDS\tALGORITHM\tEXPIRES\tSTATUS\tSOURCE", func(i pgp.KeyInfo) string {
			exp := "-"
			if i.Expires != nil {
				exp = i.Expires.Format("2006-01-02")
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", i.Fingerprint, strings.Join(i.UserIDs, ", "), i.Algorithm, exp, keyState(i), i.Source)
		})
	})
}

func runKeysRemove(ctx context.Context, c *cli, args []string) error {
	pos, cfg, err := c.start(c.flags(), args, oneArg("needs one FINGERPRINT (see sealpost keys list)"))
	if err != nil {
		return err
	}
	return withKeyring(cfg, func(k *pgp.Keyring) error {
		if err := k.Remove(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Removed %s. Its addresses now need consent or another key.\n", strings.ToUpper(pos[0]))
		noteCommand(ctx, cfg, c.stderr, commandChange{what: "key-removed", object: strings.ToUpper(pos[0])})
		return nil
	})
}

func runKeysAccept(ctx context.Context, c *cli, args []string) error {
	pos, cfg, err := c.start(c.flags(), args, oneArg("needs one FINGERPRINT (sealpost keys list shows proposed keys)"))
	if err != nil {
		return err
	}
	return withKeyring(cfg, func(k *pgp.Keyring) error {
		if err := k.Accept(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Accepted %s: mail to its addresses is encrypted to it from now on.\n", strings.ToUpper(pos[0]))
		noteCommand(ctx, cfg, c.stderr, commandChange{what: "key-accepted", object: strings.ToUpper(pos[0])})
		return nil
	})
}
