package archive

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

func newKeys(t *testing.T, name string) (pub, priv openpgp.EntityList) {
	t.Helper()
	privArm, pubArm, err := NewKeyPair(name, strings.ToLower(strings.ReplaceAll(name, " ", ""))+"@practice.example")
	if err != nil {
		t.Fatal(err)
	}
	if priv, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(privArm)); err != nil {
		t.Fatal(err)
	}
	if pub, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(pubArm)); err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// TestViewAcrossKeyChange: after the archive key is changed, a view opened
// with either key shows the messages that key opens, names the others as
// unreadable instead of failing, and picks up new records; a key that
// opens nothing is refused with a clear error.
func TestViewAcrossKeyChange(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	record := func(a *Archive, i int) {
		m, body := testMessage(i, "anna@client.example")
		if err := a.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	a := f.open(t, 0)
	record(a, 1)
	record(a, 2)
	a.Close()

	pub2, priv2 := newKeys(t, "Archive Two")
	a, err := Open(Options{Dir: f.dir, PublicKey: pub2, Now: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	record(a, 3)

	ids := func(v *View) (out []string) {
		for _, m := range v.Messages() {
			out = append(out, m.ID)
		}
		return out
	}
	for _, tt := range []struct {
		name       string
		key        openpgp.EntityList
		ids        string
		unreadable int
	}{
		{"first key", f.priv, "msg0001 msg0002", 1},
		{"second key", priv2, "msg0003", 2},
	} {
		v, err := OpenView(f.dir, tt.key)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := strings.Join(ids(v), " "); got != tt.ids || len(v.Unreadable()) != tt.unreadable {
			t.Errorf("%s: messages %q, unreadable %v; want %q and %d", tt.name, got, v.Unreadable(), tt.ids, tt.unreadable)
		}
		if tt.name == "second key" {
			record(a, 4)
			if err := v.Refresh(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(ids(v), " "); got != "msg0003 msg0004" {
				t.Errorf("after a new record: %q", got)
			}
		}
		v.Close()
	}
	a.Close()

	_, other := newKeys(t, "Not The Archive")
	if _, err := OpenView(f.dir, other); err == nil || !strings.Contains(err.Error(), "opens none of the archive's 4 messages") {
		t.Errorf("a key that opens nothing: %v", err)
	}
}
