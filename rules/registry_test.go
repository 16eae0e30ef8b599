package rules

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

func TestRegistryHistoryIsAppendOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	r, err := openRegistryAt(t, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	ev, err := r.Add(ctx, record.ConsentEvent{Client: "Chart 7", Addresses: []string{"Anna <Anna@Client.example>"}, Signed: "2026-02-03",
		Evidence: "email consent form v2, scanned to the chart", RecordedBy: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Addresses[0] != "anna@client.example" || ev.ID == 0 {
		t.Fatalf("stored %+v", ev)
	}
	if _, err := r.Revoke(ctx, "anna@client.example", "asked by phone", "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Revoke(ctx, "anna@client.example", "again", "admin"); err == nil || !strings.Contains(err.Error(), "already revoked") {
		t.Errorf("second revoke: %v", err)
	}
	if _, err := r.Revoke(ctx, "nobody@client.example", "x", "admin"); err == nil || !strings.Contains(err.Error(), "no consent on file") {
		t.Errorf("revoke of nothing: %v", err)
	}
	// A new consent after a revocation counts again; the history keeps all three.
	r.Add(ctx, record.ConsentEvent{Client: "Chart 7", Addresses: []string{"anna@client.example"}, Signed: "2026-05-01", Evidence: "new form", RecordedBy: "admin"})
	evs, _ := r.EventsSince(ctx, 0)
	if len(evs) != 3 || evs[0].Kind != "given" || evs[1].Kind != "revoked" || evs[1].Client != "Chart 7" || evs[2].Kind != "given" {
		t.Fatalf("history %+v", evs)
	}
	if later, _ := r.EventsSince(ctx, evs[1].ID); len(later) != 1 {
		t.Errorf("EventsSince(%d) = %d events", evs[1].ID, len(later))
	}
	for _, stmt := range []string{"UPDATE consent_events SET evidence = 'forged'", "DELETE FROM consent_events", "DELETE FROM consent_addresses",
		"UPDATE consent_addresses SET address = 'x@y.example'"} {
		if _, err := r.db.Exec(stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v; the history must not change", stmt, err)
		}
	}
	if addrs, _ := r.ClientAddresses(ctx, "Chart 7"); len(addrs) != 1 || addrs[0] != "anna@client.example" {
		t.Errorf("client addresses %v", addrs)
	}
}

func TestConsentExpiry(t *testing.T) {
	r, _ := openRegistryAt(t, filepath.Join(t.TempDir(), "r.db"))
	defer r.Close()
	ctx := context.Background()
	r.Add(ctx, record.ConsentEvent{Addresses: []string{"a@client.example"}, Signed: "2025-06-01", Expires: "2026-06-01", Evidence: "form", RecordedBy: "x"})
	for day, want := range map[string]ConsentState{"2026-05-31": ConsentActive, "2026-06-01": ConsentActive, "2026-06-02": ConsentExpired} {
		now, _ := time.ParseInLocation(dateLayout, day, time.Local)
		st, err := r.Current(ctx, "a@client.example", now.Add(12*time.Hour))
		if err != nil || st.State != want {
			t.Errorf("%s: %s %v, want %s", day, st.State, err, want)
		}
	}
}

func TestConsentValidation(t *testing.T) {
	r, _ := openRegistryAt(t, filepath.Join(t.TempDir(), "r.db"))
	defer r.Close()
	_, err := r.Add(context.Background(), record.ConsentEvent{Addresses: []string{"not an address"}, Signed: "22.11.2026", Expires: "2020-01-01", RecordedBy: "x"})
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("got %v; want the address, the date and the missing evidence all reported", err)
	}
	future := time.Now().AddDate(0, 0, 3).Format(dateLayout)
	if _, err := r.Add(context.Background(), record.ConsentEvent{Addresses: []string{"a@b.example"}, Signed: future, Evidence: "e", RecordedBy: "x"}); err == nil {
		t.Error("a consent signed in the future was accepted")
	}
}

func TestImport(t *testing.T) {
	r, _ := openRegistryAt(t, filepath.Join(t.TempDir(), "r.db"))
	defer r.Close()
	ctx := context.Background()
	bad := "address,name,signed,evidence,expires\n" +
		"anna@client.example,Anna,2026-01-02,intake form,\n" +
		"not-an-address,Bob,2026-01-02,intake form,\n" +
		"carl@client.example,Carl,2026-13-01,intake form,\n" +
		"dora@client.example,Dora,2026-01-02,,\n" +
		"ANNA@client.example,Anna again,2026-01-02,form,\n"
	_, err := r.Import(ctx, strings.NewReader(bad), "admin")
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	for _, want := range []string{"line 3:", "line 4:", "line 5:", "line 6:", "is already on line 2", "nothing was imported"} {
		if !strings.Contains(msg, want) {
			t.Errorf("import error lacks %q:\n%s", want, msg)
		}
	}
	if list, _ := r.List(ctx, true, time.Now()); len(list) != 0 {
		t.Fatalf("a bad file imported %d consents", len(list))
	}
	good := "\ufeffAddress,Name,Signed,Evidence,Expires\r\nanna@client.example,Anna,2026-01-02,\"intake form, page 3\",2027-01-02\r\nbob@client.example,Bob,2026-01-02,form,\r\n"
	n, err := r.Import(ctx, strings.NewReader(good), "admin")
	if err != nil || n != 2 {
		t.Fatalf("good import: %d, %v", n, err)
	}
	list, _ := r.List(ctx, false, time.Now())
	if len(list) != 2 || list[0].Evidence != "intake form, page 3" || list[0].Expires != "2027-01-02" {
		t.Fatalf("list %+v", list)
	}
	if _, err := r.Import(ctx, strings.NewReader("email,who\nx@y.example,z\n"), "admin"); err == nil || !strings.Contains(err.Error(), "lacks the column") {
		t.Errorf("bad header: %v", err)
	}
}
