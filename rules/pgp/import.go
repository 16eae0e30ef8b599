package pgp

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/rules"
)

// errPrivateKey refuses a secret key: the keyring holds public keys only.
var errPrivateKey = errors.New("this is a private (secret) key; import only the public key (gpg --export, sq key extract-cert)")

// Import reads keys (armored or binary, one or many) and revocation
// certificates, and merges them into the keyring: a key already there keeps
// every revocation it had.
func (k *Keyring) Import(ctx context.Context, r io.Reader, source string) ([]KeyInfo, error) {
	return k.importKeys(ctx, r, source, false)
}

// Propose stores keys that were offered rather than given by an admin (an
// Autocrypt header): they are not used until `sealpost keys accept`. A key
// already accepted stays accepted.
func (k *Keyring) Propose(ctx context.Context, r io.Reader, source string) ([]KeyInfo, error) {
	return k.importKeys(ctx, r, source, true)
}

// Accept makes a proposed key usable.
func (k *Keyring) Accept(ctx context.Context, fingerprint string) error {
	fpr := strings.ToUpper(strings.ReplaceAll(fingerprint, " ", ""))
	return k.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE keys SET proposed = 0 WHERE fingerprint = ?`, fpr)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("no key %s in the keyring", fpr)
		}
		return nil
	})
}

func (k *Keyring) importKeys(ctx context.Context, r io.Reader, source string, proposed bool) ([]KeyInfo, error) {
	data, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, err
	}
	packetsData, err := dearmor(data)
	if err != nil {
		return nil, err
	}
	var (
		entities    []*openpgp.Entity
		revocations []*packet.Signature
	)
	pr := packet.NewReader(bytes.NewReader(packetsData))
	for {
		p, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not an OpenPGP key: %w", err)
		}
		switch p := p.(type) {
		case *packet.PublicKey, *packet.PrivateKey:
			if _, secret := p.(*packet.PrivateKey); secret {
				return nil, errPrivateKey
			}
			pr.Unread(p)
			e, err := openpgp.ReadEntity(pr)
			if err != nil {
				return nil, fmt.Errorf("key: %w", err)
			}
			entities = append(entities, e)
		case *packet.Signature:
			if p.SigType == packet.SigTypeKeyRevocation {
				revocations = append(revocations, p)
				continue
			}
			return nil, errors.New("a signature that is not a key revocation certificate, outside any key")
		default:
			return nil, fmt.Errorf("unexpected OpenPGP packet %T outside a key", p)
		}
	}
	if len(entities) == 0 && len(revocations) == 0 {
		return nil, errors.New("no OpenPGP key in the input")
	}
	var infos []KeyInfo
	err = k.write(ctx, func(tx *sql.Tx) error {
		for _, e := range entities {
			if e.PrivateKey != nil {
				return errPrivateKey
			}
			if err := storeEntity(ctx, tx, e, source, k.now(), proposed); err != nil {
				return err
			}
			info := k.describe(e, source, k.now())
			var stillProposed bool
			tx.QueryRowContext(ctx, `SELECT proposed FROM keys WHERE fingerprint = ?`, info.Fingerprint).Scan(&stillProposed)
			if stillProposed && info.Status == string(rules.KeyUsable) {
				info.Status, info.Detail = KeyProposed, proposedDetail
			}
			infos = append(infos, info)
		}
		for _, sig := range revocations {
			e, err := k.applyRevocation(ctx, tx, sig)
			if err != nil {
				return err
			}
			infos = append(infos, k.describe(e, "revocation", k.now()))
		}
		return nil
	})
	return infos, err
}

// dearmor returns the binary packets of armored or binary input (several
// armored blocks may follow each other).
func dearmor(data []byte) ([]byte, error) {
	// Armor may follow explanatory text (gpg's revocation certificates do).
	trimmed := bytes.TrimSpace(data)
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN PGP")) && !bytes.Contains(data, []byte("\n-----BEGIN PGP")) {
		return data, nil
	}
	// armor.Decode reads ahead, so each block is decoded on its own.
	var out bytes.Buffer
	blocks := bytes.Split(data, []byte("-----BEGIN PGP"))
	for _, b := range blocks[1:] {
		block, err := armor.Decode(bytes.NewReader(append([]byte("-----BEGIN PGP"), b...)))
		if err != nil {
			return nil, fmt.Errorf("armor: %w", err)
		}
		if block.Type == "PGP PRIVATE KEY BLOCK" {
			return nil, errPrivateKey
		}
		if _, err := io.Copy(&out, block.Body); err != nil {
			return nil, fmt.Errorf("armor: %w", err)
		}
	}
	return out.Bytes(), nil
}

func storeEntity(ctx context.Context, tx *sql.Tx, e *openpgp.Entity, source string, now time.Time, proposed bool) error {
	fpr := Fingerprint(e)
	var old []byte
	err := tx.QueryRowContext(ctx, `SELECT data FROM keys WHERE fingerprint = ?`, fpr).Scan(&old)
	switch {
	case err == nil:
		if prev, err := openpgp.ReadEntity(packet.NewReader(bytes.NewReader(old))); err == nil {
			mergeEntity(prev, e)
		}
	case errors.Is(err, sql.ErrNoRows):
	default:
		return err
	}
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		return fmt.Errorf("key %s: %w", fpr, err)
	}
	ts := now.UTC().Format(time.RFC3339)
	// An admin's import accepts a proposed key; a proposal never demotes an
	// accepted one.
	if _, err := tx.ExecContext(ctx, `INSERT INTO keys (fingerprint, data, source, imported_at, updated_at, proposed) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(fingerprint) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at, proposed = CASE WHEN excluded.proposed < keys.proposed THEN excluded.proposed ELSE keys.proposed END`,
		fpr, buf.Bytes(), source, ts, ts, proposed); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM key_addresses WHERE fingerprint = ?`, fpr); err != nil {
		return err
	}
	for _, a := range entityAddresses(e) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO key_addresses (fingerprint, address) VALUES (?, ?)`, fpr, a); err != nil {
			return err
		}
	}
	return nil
}

// mergeEntity adds to e, an imported copy of a stored key, what the stored
// one knew, as OpenPGP certificates only ever grow: an older copy imported
// again must neither un-revoke the key, a subkey or a user ID, nor bring back
// a self-signature a newer one replaced (a later expiry, say).
func mergeEntity(prev, e *openpgp.Entity) {
	e.Revocations = mergeSigs(prev.Revocations, e.Revocations)
	e.Signatures = mergeSigs(prev.Signatures, e.Signatures)
	for name, pid := range prev.Identities {
		id, ok := e.Identities[name]
		if !ok {
			e.Identities[name] = pid
			continue
		}
		id.Signatures = mergeSigs(pid.Signatures, id.Signatures)
		id.Revocations = mergeSigs(pid.Revocations, id.Revocations)
		if pid.SelfSignature != nil && (id.SelfSignature == nil || pid.SelfSignature.CreationTime.After(id.SelfSignature.CreationTime)) {
			id.SelfSignature = pid.SelfSignature
		}
	}
	for _, psk := range prev.Subkeys {
		found := false
		for i := range e.Subkeys {
			sk := &e.Subkeys[i]
			if !bytes.Equal(psk.PublicKey.Fingerprint, sk.PublicKey.Fingerprint) {
				continue
			}
			found = true
			sk.Revocations = mergeSigs(psk.Revocations, sk.Revocations)
			if psk.Sig != nil && (sk.Sig == nil || psk.Sig.CreationTime.After(sk.Sig.CreationTime)) {
				sk.Sig = psk.Sig
			}
		}
		if !found {
			e.Subkeys = append(e.Subkeys, psk)
		}
	}
}

func sameIssuer(a, b *packet.Signature) bool {
	if a.IssuerKeyId == nil || b.IssuerKeyId == nil {
		return a.IssuerKeyId == b.IssuerKeyId
	}
	return *a.IssuerKeyId == *b.IssuerKeyId
}

func mergeSigs(a, b []*packet.Signature) []*packet.Signature {
	out := append([]*packet.Signature(nil), a...)
	for _, s := range b {
		dup := false
		for _, o := range out {
			if o.CreationTime.Equal(s.CreationTime) && o.SigType == s.SigType && sameIssuer(o, s) {
				dup = true
			}
		}
		if !dup {
			out = append(out, s)
		}
	}
	return out
}

// applyRevocation adds a standalone revocation certificate to the key it
// revokes, after checking that key made it.
func (k *Keyring) applyRevocation(ctx context.Context, tx *sql.Tx, sig *packet.Signature) (*openpgp.Entity, error) {
	rows, err := tx.QueryContext(ctx, `SELECT data FROM keys`)
	if err != nil {
		return nil, err
	}
	var candidates [][]byte
	for rows.Next() {
		var d []byte
		rows.Scan(&d)
		candidates = append(candidates, d)
	}
	rows.Close()
	for _, d := range candidates {
		e, err := openpgp.ReadEntity(packet.NewReader(bytes.NewReader(d)))
		if err != nil {
			continue
		}
		issued := (len(sig.IssuerFingerprint) > 0 && bytes.Equal(sig.IssuerFingerprint, e.PrimaryKey.Fingerprint)) ||
			(sig.IssuerKeyId != nil && *sig.IssuerKeyId == e.PrimaryKey.KeyId)
		if !issued {
			continue
		}
		if err := e.PrimaryKey.VerifyRevocationSignature(sig); err != nil {
			return nil, fmt.Errorf("the revocation certificate for %s does not verify: %w", Fingerprint(e), err)
		}
		e.Revocations = mergeSigs(e.Revocations, []*packet.Signature{sig})
		var buf bytes.Buffer
		if err := e.Serialize(&buf); err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET data = ?, updated_at = ? WHERE fingerprint = ?`, buf.Bytes(), k.now().UTC().Format(time.RFC3339), Fingerprint(e)); err != nil {
			return nil, err
		}
		return e, nil
	}
	return nil, errors.New("a revocation certificate for a key that is not in the keyring: import the key first")
}

// entityAddresses are the normalised email addresses of a key's user IDs.
func entityAddresses(e *openpgp.Entity) []string {
	seen := map[string]bool{}
	var out []string
	for _, id := range e.Identities {
		if id.UserId == nil {
			continue
		}
		email := id.UserId.Email
		if email == "" {
			email = id.UserId.Id // a bare "user@example.org" user ID
		}
		if n, err := addr.Normalize(email); err == nil && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
