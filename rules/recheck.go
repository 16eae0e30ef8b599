package rules

import (
	"context"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/record"
)

// Consents is the consent registry as the policy reads it (implemented by
// *Registry).
type Consents interface {
	// Current is the address's standing at now; an error wraps ErrUnavailable.
	Current(ctx context.Context, address string, now time.Time) (ConsentStatus, error)
	// Passphrase is the address's passphrase for sealed PDFs and the event
	// it was set with (nil: none); an error wraps ErrUnavailable.
	Passphrase(ctx context.Context, address string) (secret string, set *record.ConsentEvent, err error)
}

// RecheckConsent is asked right before a copy that goes out in clear on its
// clients' consent or professionals' agreements is handed to the provider
// (the relay's ConsentCheck): a message may wait in the queue for days
// after RCPT, and only a consent or an agreement that holds now lets it go. It returns the recipients who may no longer
// have the copy, each with a short phrase for the sender's failure notice
// and the record ("revoked on 2026-03-02"); the others may have it.
//
// Every recipient is decided again as Decide decides now. Colleagues,
// professionals on file and clients with an active consent may have the
// copy (one who has set a passphrase since is sealed now, and still
// consented); a refused recipient may not. A key holder is in a clear copy
// either because the client encrypted the message itself, or on a consent
// or agreement given before the key came: one who never had either, or
// whose consent and agreement hold, may have it; one whose consent or
// agreement was withdrawn or ran out may not.
//
// An error means it could not be told (it wraps ErrUnavailable) and names
// no address.
func (p *Policy) RecheckConsent(ctx context.Context, recipients []string, now time.Time) (map[string]string, error) {
	withdrawn := map[string]string{}
	for _, r := range recipients {
		d, st, err := p.decide(ctx, r, now)
		if err != nil {
			return nil, fmt.Errorf("consent check: %w", err)
		}
		if d.Address == "" {
			withdrawn[r] = "the address cannot be read"
			continue
		}
		switch d.Protection {
		case record.Internal, record.Consented, record.Professional:
			continue
		case record.Sealed:
			// A passphrase set since RCPT does not take a consent away.
			if st.State == ConsentActive {
				continue
			}
		case record.Encrypted:
			if st, err = p.registry.Current(ctx, d.Address, now); err != nil {
				return nil, fmt.Errorf("consent check: %w", err)
			}
			withdrawn := func(s ConsentState) bool { return s == ConsentRevoked || s == ConsentExpired }
			if !withdrawn(st.State) && !withdrawn(st.ProfessionalState) {
				continue
			}
		}
		withdrawn[r] = withdrawnPhrase(st, now)
	}
	return withdrawn, nil
}

// withdrawnPhrase says in a few words why a consent no longer lets a copy go.
func withdrawnPhrase(st ConsentStatus, now time.Time) string {
	switch {
	case st.State == ConsentRevoked && st.Revoked != nil:
		return "revoked on " + st.Revoked.RecordedAt.In(now.Location()).Format(dateLayout)
	case st.State == ConsentExpired && st.Given != nil:
		return "expired on " + st.Given.Expires
	case st.ProfessionalState == ConsentRevoked && st.Professional != nil:
		return "no longer a professional recipient since " + st.Professional.RecordedAt.In(now.Location()).Format(dateLayout)
	case st.ProfessionalState == ConsentExpired && st.Professional != nil:
		return "professional agreement expired on " + st.Professional.Expires
	}
	return "no consent on file"
}
