package rules

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
)

type fakeConsents map[string]ConsentStatus

func (f fakeConsents) Current(_ context.Context, address string, _ time.Time) (ConsentStatus, error) {
	if address == "broken@client.example" {
		return ConsentStatus{}, ErrUnavailable
	}
	st, ok := f[address]
	if !ok {
		st = ConsentStatus{Address: address, State: ConsentNone}
	}
	return st, nil
}

func (f fakeConsents) Passphrase(context.Context, string) (string, *record.ConsentEvent, error) {
	return "", nil, nil
}

func newRecheckPolicy(t *testing.T, consents fakeConsents, keys map[string]KeyLookup, now time.Time) *Policy {
	t.Helper()
	p, err := NewPolicy(PolicyConfig{InternalDomains: []string{"Practice.example"}, Notice: "Confidential.", Registry: consents,
		Keys: &fakeKeys{keys: keys}, Encrypter: &fakeEncrypter{}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRecheckConsent: before a clear copy goes out on consent, only an
// active consent lets a client have it; colleagues need none, and a key
// holder who never consented is in such a copy only with mail the client
// encrypted itself.
func TestRecheckConsent(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	given := &record.ConsentEvent{Kind: "given", Signed: "2025-01-01", Expires: "2026-03-01"}
	p := newRecheckPolicy(t, fakeConsents{
		"active@client.example":  {State: ConsentActive, Given: &record.ConsentEvent{Kind: "given"}},
		"revoked@client.example": {State: ConsentRevoked, Revoked: &record.ConsentEvent{Kind: "revoked", RecordedAt: now.Add(-48 * time.Hour)}},
		"expired@client.example": {State: ConsentExpired, Given: given},
		"revoked@keys.example":   {State: ConsentRevoked, Revoked: &record.ConsentEvent{Kind: "revoked", RecordedAt: now}},
	}, map[string]KeyLookup{"holder@keys.example": {Status: KeyUsable}, "revoked@keys.example": {Status: KeyUsable}, "stale@keys.example": {Status: KeyExpired}}, now)
	tests := []struct {
		rcpt string
		want string // "" sent
	}{
		{"active@client.example", ""},
		{"Colleague@practice.example", ""},
		{"holder@keys.example", ""},
		{"revoked@client.example", "revoked on 2026-03-08"},
		{"expired@client.example", "expired on 2026-03-01"},
		{"nobody@client.example", "no consent on file"},
		{"stale@keys.example", "no consent on file"},
		{"revoked@keys.example", "revoked on 2026-03-10"},
	}
	var all []string
	want := map[string]string{}
	for _, tt := range tests {
		all = append(all, tt.rcpt)
		if tt.want != "" {
			want[tt.rcpt] = tt.want
		}
	}
	got, err := p.RecheckConsent(context.Background(), all, now)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("withdrawn %v\nwant %v", got, want)
	}
	if _, err := p.RecheckConsent(context.Background(), []string{"active@client.example", "broken@client.example"}, now); !errors.Is(err, ErrUnavailable) {
		t.Errorf("an unreadable registry: %v; want ErrUnavailable", err)
	}
}

// TestRecheckConsentFollowsDecide: whatever Decide says now is what the
// check before delivery says: a recipient decided Encrypted at RCPT whose
// key has since gone but who consented meanwhile is Consented now, and may
// have the clear copy; once that consent is revoked, Decide refuses them
// and the copy does not go. Every standing of key and consent is asked.
func TestRecheckConsentFollowsDecide(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	const anna = "anna@client.example"
	consents := fakeConsents{}
	keys := map[string]KeyLookup{anna: {Status: KeyUsable, Fingerprint: "ABCD"}}
	p := newRecheckPolicy(t, consents, keys, now)
	decideAndRecheck := func() (record.Protection, map[string]string) {
		t.Helper()
		d, err := p.Decide(ctx, "therapist", anna)
		if err != nil {
			t.Fatal(err)
		}
		withdrawn, err := p.RecheckConsent(ctx, []string{anna}, now)
		if err != nil {
			t.Fatal(err)
		}
		return d.Protection, withdrawn
	}
	if got, withdrawn := decideAndRecheck(); got != record.Encrypted || len(withdrawn) != 0 {
		t.Fatalf("key holder: decided %s, withdrawn %v", got, withdrawn)
	}
	keys[anna] = KeyLookup{Status: KeyExpired, Detail: "expired on 2026-03-01"}
	consents[anna] = ConsentStatus{Address: anna, State: ConsentActive, Given: &record.ConsentEvent{Kind: "given", Signed: "2026-03-02"}}
	if got, withdrawn := decideAndRecheck(); got != record.Consented || len(withdrawn) != 0 {
		t.Errorf("key gone, consent given: decided %s, withdrawn %v; want Consented and sent", got, withdrawn)
	}
	consents[anna] = ConsentStatus{Address: anna, State: ConsentRevoked, Revoked: &record.ConsentEvent{Kind: "revoked", RecordedAt: now}}
	if got, withdrawn := decideAndRecheck(); got != record.Refused || withdrawn[anna] != "revoked on 2026-03-10" {
		t.Errorf("consent revoked: decided %s, withdrawn %v; want Refused and not sent", got, withdrawn)
	}

	standings := map[string]ConsentStatus{
		"none":    {State: ConsentNone},
		"active":  {State: ConsentActive, Given: &record.ConsentEvent{Kind: "given"}},
		"revoked": {State: ConsentRevoked, Revoked: &record.ConsentEvent{Kind: "revoked", RecordedAt: now}},
		"expired": {State: ConsentExpired, Given: &record.ConsentEvent{Kind: "given", Expires: "2026-03-01"}},
	}
	for _, key := range []KeyStatus{KeyNone, KeyUsable, KeyExpired, KeyRevoked} {
		for consent, st := range standings {
			keys[anna] = KeyLookup{Status: key}
			consents[anna] = st
			got, withdrawn := decideAndRecheck()
			_, stopped := withdrawn[anna]
			var sent bool
			switch got {
			case record.Internal, record.Consented:
				sent = true
			case record.Encrypted:
				sent = consent == "none" || consent == "active"
			}
			if stopped == sent {
				t.Errorf("key %s, consent %s: Decide says %s, the check before delivery withdrew it: %v", key, consent, got, stopped)
			}
		}
	}
}
