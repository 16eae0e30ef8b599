package archive

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// recordCipher picks the cipher for record payloads (SEIPDv1, what every
// OpenPGP implementation reads): AES-256 when every archive key lists it
// among its preferences, else AES-128, which every implementation must have.
func recordCipher(keys openpgp.EntityList) packet.CipherFunction {
	for _, e := range keys {
		sig, _ := e.PrimarySelfSignature()
		if sig == nil || !slices.Contains(sig.PreferredSymmetric, uint8(packet.CipherAES256)) {
			return packet.CipherAES128
		}
	}
	return packet.CipherAES256
}

// Records are encrypted under a session key that lasts an epoch, with its
// public-key packets (one per archive key) made once per epoch: an X25519
// or RSA operation per record costs more than encrypting a small record
// itself. Every record is still a whole OpenPGP message with its own random
// prefix, which any OpenPGP implementation with the archive's private key
// decrypts; the session key lives in memory only.
const (
	recordKeyLifetime = time.Hour
	recordKeyUses     = 100000
)

type recordKeyEpoch struct {
	ciph  packet.CipherFunction
	key   []byte
	pkesk []byte // the encrypted-key packets, written before each record's data
	made  time.Time
	uses  int
}

func (a *Archive) recordKey() (*recordKeyEpoch, error) {
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	now := time.Now() // the keys' validity is about the real clock, whatever the archive's
	if k := a.rkey; k != nil && k.uses < recordKeyUses && now.Sub(k.made) < recordKeyLifetime && !now.Before(k.made) {
		k.uses++
		return k, nil
	}
	ciph := recordCipher(a.opts.PublicKey)
	k := &recordKeyEpoch{ciph: ciph, key: make([]byte, ciph.KeySize()), made: now, uses: 1}
	if _, err := rand.Read(k.key); err != nil {
		return nil, err
	}
	var pkesk bytes.Buffer
	for _, e := range a.opts.PublicKey {
		ek, ok := e.EncryptionKey(now)
		if !ok {
			return nil, fmt.Errorf("archive: key %X cannot encrypt (expired, revoked, or no encryption key)", e.PrimaryKey.Fingerprint)
		}
		if err := packet.SerializeEncryptedKeyAEAD(&pkesk, ek.PublicKey, ciph, false, k.key, nil); err != nil {
			return nil, fmt.Errorf("archive: encrypt: %w", err)
		}
	}
	k.pkesk = pkesk.Bytes()
	a.rkey = k
	return k, nil
}
