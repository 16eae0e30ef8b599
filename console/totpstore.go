package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// LoginCodes keeps each login's TOTP secret (RFC 6238) with the last time
// step a code was taken for, where every node of the practice reads it
// (the registry's store): a code is taken once, on one node.
type LoginCodes interface {
	// LoginCode is user's secret; ok is false when the login has none.
	LoginCode(ctx context.Context, user string) (c LoginCode, ok bool, err error)
	SetLoginCode(ctx context.Context, user string, c LoginCode) error
	// UseLoginCodeStep takes the code of a time step: false when that
	// step or a later one was taken already.
	UseLoginCodeStep(ctx context.Context, user string, step int64) (bool, error)
	RemoveLoginCode(ctx context.Context, user string) error
}

// LoginCode is one login's secret (base32, as authenticator apps take it).
type LoginCode struct {
	Secret   string
	Since    time.Time
	LastStep int64
}

// totpFileEntry is a login's entry in the file the console kept its
// secrets in before they moved into the store (console-totp.json).
type totpFileEntry struct {
	Secret   string    `json:"secret"`
	Since    time.Time `json:"since"`
	LastStep int64     `json:"last_step"`
}

// MoveTOTPFile moves the secrets of a file the console kept them in into
// codes, then removes the file; logins the store has a secret for already
// keep that one. It returns how many it moved; no file is none. The file
// stays when anything fails, so the next start tries again.
func MoveTOTPFile(ctx context.Context, path string, codes LoginCodes) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("console: %w", err)
	}
	var entries map[string]totpFileEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return 0, fmt.Errorf("console: %s: %w", path, err)
	}
	n := 0
	for user, e := range entries {
		if _, ok, err := codes.LoginCode(ctx, user); err != nil {
			return n, err
		} else if ok {
			continue
		}
		if err := codes.SetLoginCode(ctx, user, LoginCode(e)); err != nil {
			return n, err
		}
		n++
	}
	if err := os.Remove(path); err != nil {
		return n, fmt.Errorf("console: the login codes are in the store now, but %w", err)
	}
	return n, nil
}
