package rules

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

func (tp *testPolicy) professional(t testing.TB, ev record.ConsentEvent) record.ConsentEvent {
	t.Helper()
	if ev.Signed == "" {
		ev.Signed = "2025-03-01"
	}
	if ev.Evidence == "" {
		ev.Evidence = "BAA signed 2025-03-01"
	}
	ev.RecordedBy = "admin"
	got, err := tp.reg.AddProfessional(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestDecideProfessional: professionals are decided in the order of
// ARCHITECTURE.md: after a usable key, before a passphrase and consent;
// an address's own entry counts before its domain's.
func TestDecideProfessional(t *testing.T) {
	tp := newTestPolicy(t)
	ctx := context.Background()
	clinic := tp.professional(t, record.ConsentEvent{Client: "Clinic (referrals)", Domain: "Clinic.Example"})
	tp.professional(t, record.ConsentEvent{Client: "Dr. Lee, psychiatrist", Addresses: []string{"lee@doctors.example"}, Evidence: "referral letter 2026-02-01"})
	tp.keys.keys["keyed@clinic.example"] = KeyLookup{Status: KeyUsable, Fingerprint: "FEED"}
	tp.passphrase(t, "both@clinic.example", "correct horse battery staple")
	tp.consent(t, "both@clinic.example", "2026-01-10", "")
	tp.professional(t, record.ConsentEvent{Addresses: []string{"left@clinic.example"}})
	if _, err := tp.reg.RevokeProfessional(ctx, "left@clinic.example", "", "left the clinic", "admin"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rcpt   string
		want   record.Protection
		reason string
	}{
		{"intake@clinic.example", record.Professional, "whole domain clinic.example"},
		{"INTAKE@Clinic.example", record.Professional, "BAA signed 2025-03-01"},
		{"lee@doctors.example", record.Professional, "referral letter 2026-02-01"},
		{"other@doctors.example", record.Refused, "ask your admin"},
		{"someone@sub.clinic.example", record.Refused, ""},
		{"keyed@clinic.example", record.Encrypted, "FEED"},
		{"both@clinic.example", record.Professional, ""},
		{"left@clinic.example", record.Refused, "no longer on file as a professional recipient"},
		{"colleague@practice.example", record.Internal, ""},
	}
	for _, tt := range tests {
		d, err := tp.Decide(ctx, "therapist", tt.rcpt)
		if err != nil {
			t.Fatal(err)
		}
		if d.Protection != tt.want || !strings.Contains(d.Reason, tt.reason) {
			t.Errorf("%s: %s %q; want %s %q", tt.rcpt, d.Protection, d.Reason, tt.want, tt.reason)
		}
		if d.Protection == record.Professional && (d.Consent == nil || d.Consent.Kind != record.ProfessionalGiven) {
			t.Errorf("%s: professional without its event: %+v", tt.rcpt, d.Consent)
		}
	}
	if d, _ := tp.Decide(ctx, "therapist", "intake@clinic.example"); d.Consent.ID != clinic.ID || d.Consent.Domain != "clinic.example" {
		t.Errorf("the decision rests on %+v, want the domain's event %d", d.Consent, clinic.ID)
	}
	if d, _ := tp.Decide(ctx, "therapist", "left@clinic.example"); d.RefusalCode != RefusalProfessionalRevoked {
		t.Errorf("withdrawn professional refused with code %q", d.RefusalCode)
	}
}

// TestProfessionalsApartFromClients: professionals are never listed,
// counted or exported as clients; the history has their events apart.
func TestProfessionalsApartFromClients(t *testing.T) {
	tp := newTestPolicy(t)
	ctx := context.Background()
	tp.consent(t, "anna@client.example", "2026-01-10", "")
	tp.professional(t, record.ConsentEvent{Client: "Insurer (BAA)", Domain: "insurer.example"})
	tp.professional(t, record.ConsentEvent{Client: "Dr. Lee", Addresses: []string{"lee@doctors.example"}})
	if _, err := tp.reg.RevokeProfessional(ctx, "lee@doctors.example", "", "referral ended", "admin"); err != nil {
		t.Fatal(err)
	}
	clients, err := tp.reg.List(ctx, true, time.Now())
	if err != nil || len(clients) != 1 || clients[0].Address != "anna@client.example" {
		t.Fatalf("clients %+v %v; want anna alone", clients, err)
	}
	active, _ := tp.reg.ListProfessionals(ctx, false, time.Now())
	if len(active) != 1 || active[0].Domain != "insurer.example" || active[0].Name != "Insurer (BAA)" || active[0].Evidence == "" {
		t.Fatalf("active professionals %+v", active)
	}
	all, _ := tp.reg.ListProfessionals(ctx, true, time.Now())
	if len(all) != 2 || all[1].Domain != "insurer.example" || all[0].Address != "lee@doctors.example" || all[0].State != ConsentRevoked ||
		all[0].Name != "Dr. Lee" || all[0].Evidence != "BAA signed 2025-03-01" || all[0].Reason != "referral ended" {
		t.Fatalf("all professionals %+v", all)
	}
	if as, _ := tp.reg.ClientAddresses(ctx, "Insurer (BAA)"); len(as) != 0 {
		t.Errorf("a professional's name finds client addresses %v", as)
	}
	evs, _ := tp.reg.EventsSince(ctx, 0)
	kinds := map[string]int{}
	for _, ev := range evs {
		kinds[ev.Kind]++
		if ev.Kind == record.ProfessionalGiven && ev.Domain == "" && len(ev.Addresses) != 1 {
			t.Errorf("professional event without its address or domain: %+v", ev)
		}
	}
	if kinds[record.ConsentGiven] != 1 || kinds[record.ProfessionalGiven] != 2 || kinds[record.ProfessionalRevoked] != 1 {
		t.Errorf("history kinds %v", kinds)
	}
	if st, _ := tp.reg.Current(ctx, "claims@insurer.example", time.Now()); st.State != ConsentNone {
		t.Errorf("a professional's standing as a client is %s", st.State)
	}
}

func TestAddProfessionalValidation(t *testing.T) {
	tp := newTestPolicy(t)
	ctx := context.Background()
	tests := []struct {
		name string
		ev   record.ConsentEvent
		says string
	}{
		{"nothing", record.ConsentEvent{Signed: "2025-01-01", Evidence: "BAA"}, "no address or domain"},
		{"both", record.ConsentEvent{Domain: "a.example", Addresses: []string{"x@b.example"}, Signed: "2025-01-01", Evidence: "BAA"}, "not both"},
		{"bad domain", record.ConsentEvent{Domain: "not a domain", Signed: "2025-01-01", Evidence: "BAA"}, "not a mail domain"},
		{"no evidence", record.ConsentEvent{Domain: "a.example", Signed: "2025-01-01"}, "evidence is empty"},
		{"prefer", record.ConsentEvent{Domain: "a.example", Signed: "2025-01-01", Evidence: "BAA", Prefer: record.PreferClear}, "client's"},
	}
	for _, tt := range tests {
		tt.ev.RecordedBy = "admin"
		_, err := tp.reg.AddProfessional(ctx, tt.ev)
		var ve *ValidationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%s: %v; want a problem saying %q", tt.name, err, tt.says)
		}
	}
	if _, err := tp.reg.RevokeProfessional(ctx, "nobody@a.example", "", "", "admin"); err == nil || !strings.Contains(err.Error(), "not on file as a professional") {
		t.Errorf("revoking an unknown professional: %v", err)
	}
	tp.professional(t, record.ConsentEvent{Domain: "a.example"})
	if _, err := tp.reg.RevokeProfessional(ctx, "", "A.example", "BAA ended", "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.reg.RevokeProfessional(ctx, "", "a.example", "", "admin"); err == nil || !strings.Contains(err.Error(), "already withdrawn") {
		t.Errorf("revoking twice: %v", err)
	}
	if d, _ := tp.Decide(ctx, "therapist", "x@a.example"); d.Protection != record.Refused || d.RefusalCode != RefusalProfessionalRevoked {
		t.Errorf("after the domain's withdrawal: %s %s", d.Protection, d.RefusalCode)
	}
}

// TestProfessionalCopies: a professional's copy is clear, with the notice
// and the practice's Autocrypt key; the content rules apply to it (the
// client's information travels unencrypted); it is checked again at DATA
// and before delivery like a client's consent.
func TestProfessionalCopies(t *testing.T) {
	tp := newTestPolicy(t, ContentRule{Name: "ssn", Pattern: ssnPattern, Action: "refuse"})
	ctx := context.Background()
	tp.professional(t, record.ConsentEvent{Client: "Dr. Lee", Addresses: []string{"lee@doctors.example"}})
	ds := tp.decideAll(t, "lee@doctors.example", "colleague@practice.example")
	sink := &memSink{}
	res, err := tp.Apply(ctx, Submission{ID: "1", Decisions: ds}, strings.NewReader("From: therapist@practice.example\r\nTo: lee@doctors.example\r\nSubject: referral\r\n\r\nAbout our client.\r\n"), sink)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Copies) != 1 || res.Copies[0].Protection != record.Professional || len(res.Copies[0].Recipients) != 2 {
		t.Fatalf("copies %+v; want one clear copy delivered as professional", res.Copies)
	}
	if body := sink.files[res.Plain].String(); !strings.Contains(body, "Notice of Confidentiality") {
		t.Errorf("the professional's copy lacks the notice:\n%s", body)
	}
	_, err = tp.Apply(ctx, Submission{ID: "2", Decisions: ds}, strings.NewReader("From: therapist@practice.example\r\nSubject: claim\r\n\r\nSSN 123-45-6789\r\n"), &memSink{})
	var r *Refusal
	if !errors.As(err, &r) || r.Code != RefusalContentRule || !strings.Contains(r.Reason, "unencrypted to <lee@doctors.example>") {
		t.Fatalf("an SSN to a professional in clear: %v; want the content rule's refusal", err)
	}
	if _, err := tp.reg.RevokeProfessional(ctx, "lee@doctors.example", "", "referral ended", "admin"); err != nil {
		t.Fatal(err)
	}
	_, err = tp.Apply(ctx, Submission{ID: "3", Decisions: ds}, strings.NewReader("Subject: s\r\n\r\nhi\r\n"), &memSink{})
	if !errors.As(err, &r) || !r.Recipient || r.Code != RefusalProfessionalRevoked {
		t.Fatalf("after the withdrawal, at DATA: %v", err)
	}
	withdrawn, err := tp.RecheckConsent(ctx, []string{"lee@doctors.example", "colleague@practice.example"}, time.Now())
	if err != nil || len(withdrawn) != 1 || !strings.HasPrefix(withdrawn["lee@doctors.example"], "no longer a professional recipient since ") {
		t.Fatalf("before delivery: %v %v", withdrawn, err)
	}
}

// TestRegistryMigrationToProfessionals: a registry from the passphrase
// era (four kinds, with prefer) takes professional events after the
// migration, with its history, ids and preferences as they were.
func TestRegistryMigrationToProfessionals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	oldSchema := `CREATE TABLE consent_events (id INTEGER PRIMARY KEY AUTOINCREMENT,
		kind TEXT NOT NULL CHECK (kind IN ('given', 'revoked', 'passphrase-set', 'passphrase-removed')), client TEXT NOT NULL DEFAULT '',
		signed TEXT NOT NULL DEFAULT '', evidence TEXT NOT NULL DEFAULT '', expires TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '',
		recorded_by TEXT NOT NULL, recorded_at TEXT NOT NULL, prefer TEXT NOT NULL DEFAULT '');
	CREATE TABLE consent_addresses (event_id INTEGER NOT NULL REFERENCES consent_events(id), address TEXT NOT NULL);
	INSERT INTO consent_events VALUES (3, 'given', 'Chart 7', '2026-01-02', 'form', '', '', 'admin', '2026-01-02T10:00:00Z', 'clear');
	INSERT INTO consent_addresses VALUES (3, 'anna@client.example');`
	if _, err := old.Exec(oldSchema); err != nil {
		t.Fatal(err)
	}
	old.Close()
	r, err := OpenRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	ev, err := r.AddProfessional(ctx, record.ConsentEvent{Domain: "clinic.example", Signed: "2025-03-01", Evidence: "BAA", RecordedBy: "admin"})
	if err != nil || ev.ID != 4 {
		t.Fatalf("a professional on a migrated registry: %+v %v", ev, err)
	}
	evs, _ := r.EventsSince(ctx, 0)
	if len(evs) != 2 || evs[0].ID != 3 || evs[0].Prefer != record.PreferClear || evs[1].Domain != "clinic.example" {
		t.Fatalf("history after the migration: %+v", evs)
	}
	if _, err := r.db.Exec("DELETE FROM professional_addresses"); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Errorf("professional_addresses is not append-only: %v", err)
	}
}
