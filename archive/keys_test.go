package archive

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// TestLoadPrivateKeyPassphrases: a protected key opens with whichever of
// the passphrases given fits it (a trailing newline, as in a file, is
// ignored), and without one that fits the error says how many were tried.
func TestLoadPrivateKeyPassphrases(t *testing.T) {
	priv, _, err := NewKeyPair("Archive", "archive@practice.example")
	if err != nil {
		t.Fatal(err)
	}
	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(priv))
	if err != nil {
		t.Fatal(err)
	}
	if err := el[0].EncryptPrivateKeys([]byte("the right one"), nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, _ := armor.Encode(&buf, openpgp.PrivateKeyType, nil)
	if err := el[0].SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	path := filepath.Join(t.TempDir(), "key.asc")
	os.WriteFile(path, buf.Bytes(), 0o600)

	given := func(pps ...string) func() ([][]byte, error) {
		return func() ([][]byte, error) {
			var out [][]byte
			for _, pp := range pps {
				out = append(out, []byte(pp))
			}
			return out, nil
		}
	}
	for _, tt := range []struct {
		name    string
		pps     func() ([][]byte, error)
		wantErr string
	}{
		{"the only one", given("the right one\n"), ""},
		{"the second of two", given("another key's\n", "the right one\n"), ""},
		{"a wrong one", given("another key's"), "wrong passphrase"},
		{"two wrong ones", given("another key's", "a third"), "none of the 2 passphrases opens it"},
		{"none at all", nil, "protected by a passphrase"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := LoadPrivateKey(path, tt.pps)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, sk := range keys[0].Subkeys {
				if sk.PrivateKey.Encrypted {
					t.Errorf("subkey still locked")
				}
			}
		})
	}
}
