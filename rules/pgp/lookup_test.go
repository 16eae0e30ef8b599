package pgp

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealpost/sealpost/rules"
)

func TestLookup(t *testing.T) {
	ctx := context.Background()
	k := newKeyring(t, "")
	usable := newKey(t, "anna@client.example", testNow.AddDate(-1, 0, 0), 0)
	expired := newKey(t, "old@client.example", testNow.AddDate(-2, 0, 0), 365*24*time.Hour)
	noEnc := newKey(t, "signonly@client.example", testNow.AddDate(-1, 0, 0), 0)
	noEnc.Subkeys = nil
	subExpired := newKey(t, "subkey@client.example", testNow.AddDate(-2, 0, 0), 0)
	life := uint32(24 * 3600)
	subExpired.Subkeys[0].Sig.KeyLifetimeSecs = &life
	if err := subExpired.Subkeys[0].Sig.SignKey(subExpired.Subkeys[0].PublicKey, subExpired.PrivateKey, nil); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*openpgp.Entity{usable, expired, noEnc, subExpired} {
		if _, err := k.Import(ctx, bytes.NewReader(armored(t, e)), "test"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		address string
		status  rules.KeyStatus
		detail  string
	}{
		{"anna@client.example", rules.KeyUsable, ""},
		{"Anna <ANNA@Client.Example>", rules.KeyUsable, ""},
		{"anna+x@client.example", rules.KeyNone, ""},
		{"nobody@client.example", rules.KeyNone, ""},
		{"old@client.example", rules.KeyExpired, "expired on " + testNow.AddDate(-1, 0, 0).Format("2006-01-02")},
		{"signonly@client.example", rules.KeyUnusable, "no encryption-capable subkey"},
		{"subkey@client.example", rules.KeyExpired, "encryption subkey expired on"},
	}
	for _, tt := range tests {
		l, err := k.Lookup(ctx, tt.address)
		if err != nil {
			t.Fatal(err)
		}
		if l.Status != tt.status || !strings.Contains(l.Detail, tt.detail) {
			t.Errorf("%s: %s %q, want %s %q", tt.address, l.Status, l.Detail, tt.status, tt.detail)
		}
		if l.Status == rules.KeyUsable && l.Fingerprint != Fingerprint(usable) {
			t.Errorf("%s: fingerprint %s", tt.address, l.Fingerprint)
		}
	}
	list, err := k.List(ctx)
	if err != nil || len(list) != 4 {
		t.Fatalf("list: %d keys, %v", len(list), err)
	}
}

func TestNewestUsableKeyWins(t *testing.T) {
	ctx := context.Background()
	k := newKeyring(t, "")
	old := newKey(t, "anna@client.example", testNow.AddDate(-3, 0, 0), 0)
	newer := newKey(t, "anna@client.example", testNow.AddDate(-1, 0, 0), 0)
	newest := newKey(t, "anna@client.example", testNow.AddDate(0, -1, 0), 0)
	newest.RevokeKey(packet.KeySuperseded, "", &packet.Config{Time: func() time.Time { return testNow.AddDate(0, 0, -1) }})
	var all bytes.Buffer
	all.Write(armored(t, old))
	all.Write(armored(t, newer))
	all.Write(armored(t, newest))
	infos, err := k.Import(ctx, &all, "file")
	if err != nil || len(infos) != 3 {
		t.Fatalf("import of three keys in one file: %d, %v", len(infos), err)
	}
	if l, _ := k.Lookup(ctx, "anna@client.example"); l.Fingerprint != Fingerprint(newer) {
		t.Errorf("chose %s, want the newest usable key %s", l.Fingerprint, Fingerprint(newer))
	}
	if err := k.Remove(ctx, Fingerprint(newer)); err != nil {
		t.Fatal(err)
	}
	if l, _ := k.Lookup(ctx, "anna@client.example"); l.Fingerprint != Fingerprint(old) {
		t.Errorf("after removal chose %s", l.Fingerprint)
	}
	if err := k.Remove(ctx, Fingerprint(newer)); err == nil {
		t.Error("removing a key twice succeeded")
	}
}
