package rules

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func cmsFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cms", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCMSEnvelopedFixtures: the openssl-made fixtures are what their names
// say (so that the variants above test what they mean to).
func TestCMSEnvelopedFixtures(t *testing.T) {
	for name, want := range map[string]string{
		"enveloped-der.p7m":  "enveloped-data",
		"enveloped-ber.p7m":  "enveloped-data",
		"enveloped-3des.p7m": "enveloped-data",
		"authenveloped.p7m":  "authenveloped-data",
	} {
		der := cmsFixture(t, name)
		if err := verifyCMSEnveloped(der, want); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := verifyCMSEnveloped(der, ""); err != nil {
			t.Errorf("%s, either type: %v", name, err)
		}
		for i := 1; i < len(der); i += 7 {
			if verifyCMSEnveloped(der[:i], "") == nil {
				t.Errorf("%s cut to %d octets passes", name, i)
			}
		}
	}
	if verifyCMSEnveloped(cmsFixture(t, "signed.p7m"), "") == nil {
		t.Error("signed data passes as enveloped")
	}
}

// FuzzCMSEnveloped: the BER reader never panics or loops on any input,
// and no input is both enveloped and signed data.
func FuzzCMSEnveloped(f *testing.F) {
	for _, name := range []string{"enveloped-der.p7m", "enveloped-ber.p7m", "enveloped-3des.p7m", "authenveloped.p7m", "signed.p7m", "signed-b64-ber.p7m"} {
		f.Add(cmsFixture(f, name))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		_, signed := cmsSignedContent(in)
		if verifyCMSEnveloped(in, "") == nil && signed {
			t.Fatal("both enveloped and signed")
		}
	})
}

func TestCMSSignedContent(t *testing.T) {
	for _, name := range []string{"signed-b64.p7m", "signed-b64-ber.p7m"} {
		content, ok := cmsSignedContent(cmsFixture(t, name))
		if !ok || !bytes.Contains(content, []byte("Content-Transfer-Encoding: base64")) {
			t.Errorf("%s: %v %q", name, ok, content)
		}
	}
	for _, name := range []string{"enveloped-der.p7m", "enveloped-ber.p7m", "authenveloped.p7m"} {
		if _, ok := cmsSignedContent(cmsFixture(t, name)); ok {
			t.Errorf("%s read as signed data", name)
		}
	}
}
