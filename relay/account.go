package relay

import "github.com/sealpost/sealpost/relay/submission"

// HashPassword returns a bcrypt hash for an account's password_hash, as
// the submission room verifies logins against it.
func HashPassword(pw string) (string, error) { return submission.HashPassword(pw) }

// CheckPasswordHash says whether h is a hash the submission room can
// verify logins against.
func CheckPasswordHash(h string) error { return submission.CheckPasswordHash(h) }
