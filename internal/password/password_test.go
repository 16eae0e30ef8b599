package password

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestHashAndCheck(t *testing.T) {
	h, err := Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckHash(h); err != nil {
		t.Errorf("CheckHash of a fresh hash: %v", err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse battery")); err != nil {
		t.Errorf("the hash does not verify the password: %v", err)
	}
	if _, err := Hash(strings.Repeat("x", 73)); err == nil {
		t.Error("a password bcrypt would cut at 72 bytes was hashed")
	}
	for _, bad := range []string{"", "demo-password", "$2a$xx$notahash"} {
		if CheckHash(bad) == nil {
			t.Errorf("CheckHash(%q) accepted it", bad)
		}
	}
}
