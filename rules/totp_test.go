package rules

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestLoginCodes: a login's secret is kept encrypted (the database holds
// no secret in clear), read back by another handle on the same registry
// (a second node), and a time step taken on one handle is taken for both,
// as is every earlier one; a row moved to another login does not decrypt;
// a removed secret is gone.
func TestLoginCodes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "registry.db")
	node1, err := openRegistryAt(t, path)
	if err != nil {
		t.Fatal(err)
	}
	defer node1.Close()
	node2, err := openRegistryAt(t, path)
	if err != nil {
		t.Fatal(err)
	}
	defer node2.Close()

	const secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	since := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	if _, ok, err := node1.LoginCode(ctx, "anna"); ok || err != nil {
		t.Fatalf("a login without codes: %v %v", ok, err)
	}
	if err := node1.SetLoginCode(ctx, "anna", LoginCode{Secret: secret, Since: since, LastStep: 100}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := node2.LoginCode(ctx, "anna")
	if err != nil || !ok || got.Secret != secret || !got.Since.Equal(since) || got.LastStep != 100 {
		t.Fatalf("the other node reads %+v %v %v", got, ok, err)
	}
	var sealed []byte
	if err := node1.db.QueryRowContext(ctx, `SELECT sealed FROM console_totp WHERE username = ?`, "anna").Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte(secret)) {
		t.Fatal("the secret is stored in clear")
	}

	steps := []struct {
		name string
		node *Registry
		step int64
		want bool
	}{
		{"a new step", node1, 101, true},
		{"the same step on the other node", node2, 101, false},
		{"an earlier step", node2, 100, false},
		{"a later step on the other node", node2, 103, true},
		{"a step in between on the first", node1, 102, false},
	}
	for _, s := range steps {
		ok, err := s.node.UseLoginCodeStep(ctx, "anna", s.step)
		if err != nil || ok != s.want {
			t.Errorf("%s: %v %v, want %v", s.name, ok, err, s.want)
		}
	}
	if ok, err := node1.UseLoginCodeStep(ctx, "bob", 200); ok || err != nil {
		t.Errorf("a step for a login without codes: %v %v", ok, err)
	}

	// anna's row given to bob: no code for bob from it.
	if _, err := node1.db.ExecContext(ctx, `INSERT INTO console_totp (username, sealed, since, last_step) VALUES (?, ?, ?, ?)`,
		"bob", sealed, since.Format(time.RFC3339Nano), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := node2.LoginCode(ctx, "bob"); err == nil {
		t.Error("a secret moved to another login decrypted")
	}

	if removed, err := node2.RemoveLoginCode(ctx, "anna"); err != nil || !removed {
		t.Fatalf("remove: %v %v", removed, err)
	}
	if removed, err := node2.RemoveLoginCode(ctx, "anna"); err != nil || removed {
		t.Errorf("remove again: %v %v", removed, err)
	}
	if _, ok, err := node1.LoginCode(ctx, "anna"); ok || err != nil {
		t.Errorf("after removal: %v %v", ok, err)
	}
}
