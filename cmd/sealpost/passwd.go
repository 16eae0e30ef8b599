package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sealpost/sealpost/internal/password"
)

func init() {
	register(&command{
		name:    "passwd",
		args:    "",
		summary: "read a password on stdin, print a hash for the config's password_hash",
		run:     runPasswd,
	})
}

func runPasswd(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("takes no arguments; type the password on stdin")
	}
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && line == "" {
		return errors.New("no password on stdin")
	}
	pw := strings.TrimRight(line, "\r\n")
	if len(pw) < 8 {
		return errors.New("password too short: use at least 8 characters")
	}
	hash, err := password.Hash(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, hash)
	return nil
}
