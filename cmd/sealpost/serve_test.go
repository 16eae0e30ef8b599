package main

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

type fakeConsents map[string]rules.ConsentStatus

func (f fakeConsents) Current(_ context.Context, address string, _ time.Time) (rules.ConsentStatus, error) {
	if address == "broken@client.example" {
		return rules.ConsentStatus{}, rules.ErrUnavailable
	}
	st, ok := f[address]
	if !ok {
		st = rules.ConsentStatus{Address: address, State: rules.ConsentNone}
	}
	return st, nil
}

type fakeKeys map[string]rules.KeyStatus

func (f fakeKeys) Lookup(_ context.Context, address string) (rules.KeyLookup, error) {
	if s, ok := f[address]; ok {
		return rules.KeyLookup{Status: s}, nil
	}
	return rules.KeyLookup{Status: rules.KeyNone}, nil
}

// TestConsentGate: before a clear copy goes out on consent, only an active
// consent lets a client have it; colleagues need none, and a key holder
// who never consented is in such a copy only with mail the client
// encrypted itself.
func TestConsentGate(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	given := &record.ConsentEvent{Kind: "given", Signed: "2025-01-01", Expires: "2026-03-01"}
	g := &consentGate{
		registry: fakeConsents{
			"active@client.example":  {State: rules.ConsentActive, Given: &record.ConsentEvent{Kind: "given"}},
			"revoked@client.example": {State: rules.ConsentRevoked, Revoked: &record.ConsentEvent{Kind: "revoked", RecordedAt: now.Add(-48 * time.Hour)}},
			"expired@client.example": {State: rules.ConsentExpired, Given: given},
			"revoked@keys.example":   {State: rules.ConsentRevoked, Revoked: &record.ConsentEvent{Kind: "revoked", RecordedAt: now}},
		},
		keys: fakeKeys{"holder@keys.example": rules.KeyUsable, "revoked@keys.example": rules.KeyUsable, "stale@keys.example": rules.KeyExpired},
	}
	// The internal domains are the policy's own.
	reg, err := rules.OpenRegistry(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	policy, err := rules.NewPolicy(rules.PolicyConfig{InternalDomains: []string{"Practice.example"}, Notice: "Confidential.", Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	g.internal = policy.IsInternal
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
	got, err := g.check(context.Background(), all, now)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("withdrawn %v\nwant %v", got, want)
	}
	if _, err := g.check(context.Background(), []string{"active@client.example", "broken@client.example"}, now); !errors.Is(err, rules.ErrUnavailable) {
		t.Errorf("an unreadable registry: %v; want ErrUnavailable", err)
	}
}
