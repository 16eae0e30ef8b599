package pgp

import (
	"bytes"
	"context"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/rules"
)

func autocryptHeader(addr string, key []byte, extra string) string {
	b64 := base64.StdEncoding.EncodeToString(key)
	var folded strings.Builder
	for len(b64) > 76 {
		folded.WriteString(b64[:76] + "\r\n ")
		b64 = b64[76:]
	}
	folded.WriteString(b64)
	return "addr=" + addr + ";" + extra + " keydata=" + folded.String()
}

func TestAutocryptKey(t *testing.T) {
	e := newKey(t, "anna@client.example", testNow.Add(-time.Hour), 0)
	var bin bytes.Buffer
	e.Serialize(&bin)
	key := bin.Bytes()
	tests := []struct {
		name    string
		headers []string
		from    string
		ok      bool
	}{
		{"plain", []string{autocryptHeader("anna@client.example", key, "")}, "Anna@Client.example", true},
		{"prefer-encrypt and a non-critical attribute", []string{autocryptHeader("anna@client.example", key, " prefer-encrypt=mutual; _x=1;")}, "anna@client.example", true},
		{"addr is not the sender", []string{autocryptHeader("mallory@evil.example", key, "")}, "anna@client.example", false},
		{"two headers", []string{autocryptHeader("anna@client.example", key, ""), autocryptHeader("anna@client.example", key, "")}, "anna@client.example", false},
		{"unknown critical attribute", []string{autocryptHeader("anna@client.example", key, " future=1;")}, "anna@client.example", false},
		{"bad base64", []string{"addr=anna@client.example; keydata=!!!"}, "anna@client.example", false},
		{"none", nil, "anna@client.example", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h textproto.Header
			for _, v := range tt.headers {
				h.Add("Autocrypt", v)
			}
			got, ok := AutocryptKey(h, tt.from)
			if ok != tt.ok || (ok && !bytes.Equal(got, key)) {
				t.Errorf("ok = %v, want %v", ok, tt.ok)
			}
		})
	}
}

// TestProposedKeys: a key offered by Autocrypt is not used until accepted;
// an admin's import accepts it; a proposal never demotes an accepted key.
func TestProposedKeys(t *testing.T) {
	ctx := context.Background()
	k := newKeyring(t, filepath.Join(t.TempDir(), "keyring.db"))
	e := newKey(t, "anna@client.example", testNow.Add(-time.Hour), 0)
	infos, err := k.Propose(ctx, bytes.NewReader(armored(t, e)), "autocrypt")
	if err != nil || len(infos) != 1 || infos[0].Status != KeyProposed {
		t.Fatalf("Propose: %+v %v", infos, err)
	}
	if l, _ := k.Lookup(ctx, "anna@client.example"); l.Status != rules.KeyNone {
		t.Fatalf("a proposed key is used: %+v", l)
	}
	list, _ := k.List(ctx)
	if len(list) != 1 || list[0].Status != KeyProposed || list[0].Source != "autocrypt" {
		t.Fatalf("keys list: %+v", list)
	}
	if err := k.Accept(ctx, strings.ToLower(infos[0].Fingerprint)); err != nil {
		t.Fatal(err)
	}
	if l, _ := k.Lookup(ctx, "anna@client.example"); l.Status != rules.KeyUsable {
		t.Fatalf("an accepted key is not used: %+v", l)
	}
	if _, err := k.Propose(ctx, bytes.NewReader(armored(t, e)), "autocrypt"); err != nil {
		t.Fatal(err)
	}
	if l, _ := k.Lookup(ctx, "anna@client.example"); l.Status != rules.KeyUsable {
		t.Fatal("a second proposal demoted the accepted key")
	}
	if err := k.Accept(ctx, "00FF"); err == nil {
		t.Error("accepting an unknown fingerprint succeeded")
	}

	other := newKey(t, "bob@client.example", testNow.Add(-time.Hour), 0)
	k.Propose(ctx, bytes.NewReader(armored(t, other)), "autocrypt")
	if _, err := k.Import(ctx, bytes.NewReader(armored(t, other)), "import"); err != nil {
		t.Fatal(err)
	}
	if l, _ := k.Lookup(ctx, "bob@client.example"); l.Status != rules.KeyUsable {
		t.Fatal("an admin's import did not accept the proposed key")
	}
}

// FuzzAutocrypt: the header comes from anyone who mails a client address;
// reading it never panics, and a key is offered only for the sender.
func FuzzAutocrypt(f *testing.F) {
	f.Add("addr=anna@client.example; keydata=AAAA", "anna@client.example")
	f.Add("addr=anna@client.example; prefer-encrypt=mutual; _x=1; keydata=mQ==", "Anna@Client.Example")
	f.Add("keydata=;;;addr=", "x@y")
	f.Fuzz(func(t *testing.T, value, from string) {
		var h textproto.Header
		h.Add("Autocrypt", value)
		key, ok := AutocryptKey(h, from)
		if ok && len(key) == 0 {
			t.Fatal("offered an empty key")
		}
	})
}
