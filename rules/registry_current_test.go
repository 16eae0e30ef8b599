package rules

import (
	"context"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules/sealed"
)

// TestCurrentStanding: Current reads an address's consent, professional
// and passphrase standing in one statement; each history below has an
// edge where the parts could be mixed up: the newest consent event
// counts, a revocation keeps the consent it ended, an address's own
// professional entry counts before its domain's (also a newer one), a
// client may also be a professional, a passphrase removed is no
// passphrase.
func TestCurrentStanding(t *testing.T) {
	r, _ := openTestRegistry(t)
	ctx := context.Background()
	consent := func(address, signed, expires string) record.ConsentEvent {
		t.Helper()
		ev, err := r.Add(ctx, record.ConsentEvent{Client: "Chart 9", Addresses: []string{address}, Signed: signed, Expires: expires,
			Evidence: "intake form", RecordedBy: "admin"})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	revoke := func(address string) record.ConsentEvent {
		t.Helper()
		ev, err := r.Revoke(ctx, address, "asked by phone", "admin")
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	professional := func(ev record.ConsentEvent) record.ConsentEvent {
		t.Helper()
		ev.Signed, ev.Evidence, ev.RecordedBy = "2025-03-01", "BAA", "admin"
		got, err := r.AddProfessional(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	prepared, err := sealed.CheckPassphrase("violet harbor lantern quietly")
	if err != nil {
		t.Fatal(err)
	}
	setPassphrase := func(address string) record.ConsentEvent {
		t.Helper()
		ev, err := r.SetPassphrase(ctx, []string{address}, "Chart 9", prepared, "admin")
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}

	first := consent("again@client.example", "2026-01-02", "")
	revoke("again@client.example")
	again := consent("again@client.example", "2026-03-04", "")
	ended := consent("ended@client.example", "2026-01-02", "")
	endedRevocation := revoke("ended@client.example")
	expiredEv := consent("expired@client.example", "2025-01-02", "2026-01-02")
	domain := professional(record.ConsentEvent{Domain: "clinic.example"})
	both := consent("both@clinic.example", "2026-01-02", "")
	own := professional(record.ConsentEvent{Addresses: []string{"left@clinic.example"}})
	if _, err := r.RevokeProfessional(ctx, "left@clinic.example", "", "left the clinic", "admin"); err != nil {
		t.Fatal(err)
	}
	professional(record.ConsentEvent{Addresses: []string{"own@later.example"}})
	if _, err := r.RevokeProfessional(ctx, "own@later.example", "", "agreement ended", "admin"); err != nil {
		t.Fatal(err)
	}
	laterDomain := professional(record.ConsentEvent{Domain: "later.example"})
	setPassphrase("removed@client.example")
	removed, err := r.RemovePassphrase(ctx, []string{"removed@client.example"}, "admin")
	if err != nil {
		t.Fatal(err)
	}
	sealedOnly := setPassphrase("sealed@client.example")
	replaced := consent("sealed-too@client.example", "2026-01-02", "")
	setPassphrase("sealed-too@client.example")
	r.RemovePassphrase(ctx, []string{"sealed-too@client.example"}, "admin")
	newest := setPassphrase("sealed-too@client.example")

	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.Local)
	tests := []struct {
		address           string
		state             ConsentState
		given, revoked    int64 // event ids; 0: none
		professional      ConsentState
		professionalEvent int64
		passphrase        int64
		passphraseRemoved int64
	}{
		{address: "nobody@client.example", state: ConsentNone, professional: ConsentNone},
		{address: "again@client.example", state: ConsentActive, given: again.ID, professional: ConsentNone},
		{address: "ended@client.example", state: ConsentRevoked, given: ended.ID, revoked: endedRevocation.ID, professional: ConsentNone},
		{address: "expired@client.example", state: ConsentExpired, given: expiredEv.ID, professional: ConsentNone},
		{address: "intake@clinic.example", state: ConsentNone, professional: ConsentActive, professionalEvent: domain.ID},
		{address: "both@clinic.example", state: ConsentActive, given: both.ID, professional: ConsentActive, professionalEvent: domain.ID},
		{address: "left@clinic.example", state: ConsentNone, professional: ConsentRevoked},
		{address: "own@later.example", state: ConsentNone, professional: ConsentRevoked},
		{address: "other@later.example", state: ConsentNone, professional: ConsentActive, professionalEvent: laterDomain.ID},
		{address: "removed@client.example", state: ConsentNone, professional: ConsentNone, passphraseRemoved: removed.ID},
		{address: "sealed@client.example", state: ConsentNone, professional: ConsentNone, passphrase: sealedOnly.ID},
		{address: "sealed-too@client.example", state: ConsentActive, given: replaced.ID, professional: ConsentNone, passphrase: newest.ID},
	}
	for _, tt := range tests {
		st, err := r.Current(ctx, tt.address, now)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != tt.state || eventID(st.Given) != tt.given || eventID(st.Revoked) != tt.revoked {
			t.Errorf("%s: consent %s given %d revoked %d; want %s %d %d", tt.address, st.State, eventID(st.Given), eventID(st.Revoked),
				tt.state, tt.given, tt.revoked)
		}
		if st.ProfessionalState != tt.professional || (tt.professionalEvent != 0 && eventID(st.Professional) != tt.professionalEvent) {
			t.Errorf("%s: professional %s on %d; want %s on %d", tt.address, st.ProfessionalState, eventID(st.Professional),
				tt.professional, tt.professionalEvent)
		}
		if eventID(st.Passphrase) != tt.passphrase || eventID(st.PassphraseRemoved) != tt.passphraseRemoved {
			t.Errorf("%s: passphrase %d removed %d; want %d %d", tt.address, eventID(st.Passphrase), eventID(st.PassphraseRemoved),
				tt.passphrase, tt.passphraseRemoved)
		}
	}
	if st, _ := r.Current(ctx, "again@client.example", now); st.Given == nil || st.Given.ID == first.ID || st.Given.Signed != "2026-03-04" {
		t.Errorf("a consent given again after its revocation rests on %+v", st.Given)
	}
	if st, _ := r.Current(ctx, "left@clinic.example", now); st.Professional == nil || st.Professional.Kind != record.ProfessionalRevoked ||
		len(st.Professional.Addresses) != 1 || st.Professional.Domain != "" || own.ID >= st.Professional.ID {
		t.Errorf("the address's own withdrawal does not count before its domain's entry: %+v", st.Professional)
	}
	if st, _ := r.Current(ctx, "both@clinic.example", now); st.Professional == nil || st.Professional.Domain != "clinic.example" ||
		len(st.Given.Addresses) != 1 || st.Given.Addresses[0] != "both@clinic.example" {
		t.Errorf("a client who is also a professional: %+v / %+v", st.Given, st.Professional)
	}
}

func eventID(ev *record.ConsentEvent) int64 {
	if ev == nil {
		return 0
	}
	return ev.ID
}
