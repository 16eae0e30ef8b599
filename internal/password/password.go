// Package password makes and checks the password hashes of the config's
// logins (therapists' accounts, archive viewers): bcrypt, the one format
// `sealpost passwd` writes and every login accepts.
package password

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// Cost is bcrypt's work factor for new hashes: tens of milliseconds a
// guess, so a stolen config does not give the passwords away cheaply.
const Cost = 11

// Hash returns a bcrypt hash of pw for a config's password_hash.
func Hash(pw string) (string, error) {
	if len(pw) > 72 {
		return "", errors.New("password longer than 72 bytes (bcrypt's limit)")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), Cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckHash says whether h is a hash sealpost can verify.
func CheckHash(h string) error {
	if h == "" {
		return errors.New("is empty")
	}
	if _, err := bcrypt.Cost([]byte(h)); err != nil {
		return errors.New("is not a bcrypt hash")
	}
	return nil
}
