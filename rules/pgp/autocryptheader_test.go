package pgp

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/testutil"
)

// autocryptOffer is what a receiver reads from the header AutocryptHeader
// makes: the header as a message carries it, parsed back by the reader
// sealpost uses for clients' headers.
func autocryptOffer(t *testing.T, value, from string) *openpgp.Entity {
	t.Helper()
	for i, line := range strings.Split(value, "\r\n") {
		if i > 0 && (len(line) > 78 || line[0] != ' ') {
			t.Fatalf("folded line %d is %q", i, line)
		}
	}
	raw := "Autocrypt: " + value + "\r\nFrom: " + from + "\r\n\r\n"
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	keydata, ok := AutocryptKey(h, from)
	if !ok {
		t.Fatalf("the header offers no key for %s:\n%s", from, raw)
	}
	el, err := openpgp.ReadKeyRing(bytes.NewReader(keydata))
	if err != nil || len(el) != 1 {
		t.Fatalf("keydata: %d keys, %v", len(el), err)
	}
	return el[0]
}

// TestAutocryptHeaderOffersThePracticeKey: the header carries the practice
// key's public part for the sending address (a user ID for it, certified
// by the practice key when the key has none), with the encryption subkey;
// go-crypto reads it and can encrypt to it; it is the same on every call.
func TestAutocryptHeaderOffersThePracticeKey(t *testing.T) {
	practice := newKey(t, "practice@practice.example", testNow.Add(-24*time.Hour), 0)
	enc := NewEncrypter(newKeyring(t, ""), practice)
	for _, from := range []string{"therapist@practice.example", "practice@practice.example"} {
		v := enc.AutocryptHeader(from)
		if !strings.HasPrefix(v, "addr="+from+"; keydata=\r\n ") {
			t.Fatalf("%s: header %q", from, v[:min(len(v), 80)])
		}
		got := autocryptOffer(t, v, from)
		if Fingerprint(got) != Fingerprint(practice) {
			t.Fatalf("%s: the header offers %s, the practice key is %s", from, Fingerprint(got), Fingerprint(practice))
		}
		if got.PrivateKey != nil || len(got.Subkeys) != 1 {
			t.Errorf("%s: private part %v, %d subkeys; want the public key and its encryption subkey", from, got.PrivateKey != nil, len(got.Subkeys))
		}
		if len(got.Identities) != 1 || got.PrimaryIdentity().UserId.Email != from {
			t.Errorf("%s: user IDs %v", from, got.Identities)
		}
		if _, ok := got.EncryptionKey(testNow); !ok {
			t.Errorf("%s: a receiver cannot encrypt to the key offered", from)
		}
		if again := enc.AutocryptHeader(from); again != v {
			t.Errorf("%s: the header changed between two messages", from)
		}
	}
	// A key that expires: the user ID made for an address says so too.
	expiring := newKey(t, "practice@expiring.example", testNow.Add(-24*time.Hour), 400*24*time.Hour)
	got := autocryptOffer(t, NewEncrypter(newKeyring(t, ""), expiring).AutocryptHeader("t@expiring.example"), "t@expiring.example")
	if lt := got.PrimaryIdentity().SelfSignature.KeyLifetimeSecs; lt == nil || *lt != 400*24*3600 {
		t.Errorf("the offered key's lifetime %v, want the practice key's", lt)
	}
	if v := NewEncrypter(newKeyring(t, ""), nil).AutocryptHeader("therapist@practice.example"); v != "" {
		t.Errorf("without a practice key: %q", v)
	}
}

// TestAutocryptKeydataImportsIntoGnuPG: gpg takes the keydata as the
// practice key, with the sending address as its user ID.
func TestAutocryptKeydataImportsIntoGnuPG(t *testing.T) {
	testutil.RequireTools(t, "gpg")
	practice := newKey(t, "practice@practice.example", testNow.Add(-time.Hour), 0)
	enc := NewEncrypter(newKeyring(t, ""), practice)
	v := enc.AutocryptHeader("therapist@practice.example")
	keydata := strings.Join(strings.Fields(strings.SplitN(v, "keydata=", 2)[1]), "")
	home := t.TempDir()
	os.Chmod(home, 0o700)
	file := filepath.Join(home, "keydata.b64")
	os.WriteFile(file, []byte(keydata), 0o600)
	cmd := exec.Command("sh", "-c", "base64 -d keydata.b64 > keydata.pgp && gpg --batch --homedir . --import keydata.pgp && gpg --batch --homedir . --with-colons --list-keys")
	cmd.Dir = home
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gpg: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "fpr:::::::::"+Fingerprint(practice)+":") || !strings.Contains(string(out), "<therapist@practice.example>") {
		t.Fatalf("gpg does not show the practice key for the address:\n%s", out)
	}
}
