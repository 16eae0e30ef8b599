package main

import (
	"context"
	"fmt"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/rules"
)

func init() {
	register(&command{name: "console codes-off", args: "LOGIN",
		summary: "turn a console login's codes (TOTP) off, for someone who lost their phone; recorded in the activity log", run: runConsoleCodesOff})
}

// runConsoleCodesOff removes a login's secret from the registry's store:
// the login's password alone opens the console again (or, for an admin
// with codes required, the set-up page), on every node at once.
func runConsoleCodesOff(ctx context.Context, c *cli, args []string) error {
	pos, cfg, err := c.start(c.flags(), args, oneArg("needs one console LOGIN"))
	if err != nil {
		return err
	}
	if !consoleLoginNamed(cfg, pos[0]) {
		return fmt.Errorf("%q is no console login ([[console.admin]], [[account]] or [[archive.viewer]])", pos[0])
	}
	return withRegistry(cfg, func(reg *rules.Registry) error {
		removed, err := reg.RemoveLoginCode(ctx, pos[0])
		if err != nil {
			return err
		}
		if !removed {
			fmt.Fprintf(c.stdout, "%s has no login codes: nothing to turn off.\n", pos[0])
			return nil
		}
		fmt.Fprintf(c.stdout, "Login codes are off for %s: the password alone logs in until they set codes up again.\n", pos[0])
		noteCommand(ctx, cfg, c.stderr, commandChange{what: "login-codes-removed", object: pos[0]})
		return nil
	})
}

func consoleLoginNamed(cfg *config.Config, name string) bool {
	for _, l := range consoleLogins(cfg) {
		if l.Username == name {
			return true
		}
	}
	return false
}
