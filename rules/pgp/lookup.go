package pgp

import (
	"context"
	"fmt"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/rules"
)

// Lookup implements rules.Keys: the newest usable key carrying the address,
// or why no key can be used. With WKD on, an address without a usable key is
// looked up in its domain's Web Key Directory (within a few seconds; a
// failure there only means no key).
func (k *Keyring) Lookup(ctx context.Context, address string) (rules.KeyLookup, error) {
	n, err := addr.Normalize(address)
	if err != nil {
		return rules.KeyLookup{Status: rules.KeyNone}, nil
	}
	l, err := k.lookupLocal(ctx, n)
	if err != nil || l.Status == rules.KeyUsable || k.wkd == nil {
		return l, err
	}
	if werr := k.wkdLookup(ctx, n); werr != nil {
		return l, nil
	}
	return k.lookupLocal(ctx, n)
}

func (k *Keyring) lookupLocal(ctx context.Context, n string) (rules.KeyLookup, error) {
	// The change counter comes with the fingerprints: a key holder's
	// lookup is one round trip to a shared database.
	rows, err := k.q.QueryContext(ctx, `SELECT a.fingerprint, g.n FROM key_addresses a JOIN keys k ON k.fingerprint = a.fingerprint
		CROSS JOIN generation g WHERE a.address = ? AND k.proposed = 0 AND g.id = 1`, n)
	if err != nil {
		return rules.KeyLookup{}, fmt.Errorf("keyring: %w", err)
	}
	var fprs []string
	var gen int64
	for rows.Next() {
		var f string
		if err := rows.Scan(&f, &gen); err != nil {
			rows.Close()
			return rules.KeyLookup{}, fmt.Errorf("keyring: %w", err)
		}
		fprs = append(fprs, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rules.KeyLookup{}, fmt.Errorf("keyring: %w", err)
	}
	if len(fprs) == 0 {
		return rules.KeyLookup{Status: rules.KeyNone}, nil
	}
	es, err := k.entitiesAt(ctx, gen, fprs)
	if err != nil {
		return rules.KeyLookup{}, fmt.Errorf("keyring: %w", err)
	}
	now := k.now()
	var best, fallback rules.KeyLookup
	var bestCreated, fallbackCreated time.Time
	for _, e := range es {
		status, detail := keyStatus(e, n, now)
		l := rules.KeyLookup{Status: status, Fingerprint: Fingerprint(e), Detail: detail}
		created := e.PrimaryKey.CreationTime
		if status == rules.KeyUsable {
			if best.Status == "" || created.After(bestCreated) {
				best, bestCreated = l, created
			}
		} else if fallback.Status == "" || created.After(fallbackCreated) {
			fallback, fallbackCreated = l, created
		}
	}
	if best.Status != "" {
		return best, nil
	}
	return fallback, nil
}

// keyStatus says whether e may encrypt to address now, and if not why.
func keyStatus(e *openpgp.Entity, address string, now time.Time) (rules.KeyStatus, string) {
	if e.Revoked(now) {
		return rules.KeyRevoked, revokedDetail(e.Revocations)
	}
	var idFound, idRevoked bool
	for _, id := range e.Identities {
		email := id.UserId.Email
		if email == "" {
			email = id.UserId.Id
		}
		if n, err := addr.Normalize(email); err == nil && n == address {
			idFound = true
			if id.Revoked(now) {
				idRevoked = true
			} else {
				idRevoked = false
				break
			}
		}
	}
	if !idFound {
		return rules.KeyNone, ""
	}
	if idRevoked {
		return rules.KeyRevoked, "the user ID for this address was revoked"
	}
	sig, _ := e.PrimarySelfSignature()
	if sig == nil {
		return rules.KeyUnusable, "it has no valid self-signature"
	}
	if e.PrimaryKey.KeyExpired(sig, now) {
		return rules.KeyExpired, "expired on " + expiry(e.PrimaryKey.CreationTime, sig.KeyLifetimeSecs).Format("2006-01-02")
	}
	if _, ok := e.EncryptionKey(now); ok {
		return rules.KeyUsable, ""
	}
	// No encryption key now: say whether they expired, were revoked, or never were.
	var lastExpiry time.Time
	revokedSub := false
	for _, sk := range e.Subkeys {
		if !sk.Sig.FlagsValid || !sk.Sig.FlagEncryptCommunications {
			continue
		}
		if sk.Revoked(now) {
			revokedSub = true
			continue
		}
		if sk.PublicKey.KeyExpired(sk.Sig, now) {
			if x := expiry(sk.PublicKey.CreationTime, sk.Sig.KeyLifetimeSecs); x.After(lastExpiry) {
				lastExpiry = x
			}
		}
	}
	switch {
	case !lastExpiry.IsZero():
		return rules.KeyExpired, "its encryption subkey expired on " + lastExpiry.Format("2006-01-02")
	case revokedSub:
		return rules.KeyRevoked, "its encryption subkey was revoked"
	}
	return rules.KeyUnusable, "it has no encryption-capable subkey"
}

func expiry(created time.Time, lifetime *uint32) time.Time {
	if lifetime == nil || *lifetime == 0 {
		return time.Time{}
	}
	return created.Add(time.Duration(*lifetime) * time.Second)
}

// revokedDetail describes the first revocation: the one a reader meets first.
func revokedDetail(sigs []*packet.Signature) string {
	if len(sigs) == 0 {
		return "revoked"
	}
	d := "revoked on " + sigs[0].CreationTime.Format("2006-01-02")
	if sigs[0].RevocationReasonText != "" {
		d += ": " + sigs[0].RevocationReasonText
	}
	return d
}
