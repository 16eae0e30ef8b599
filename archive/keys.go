package archive

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// PrivateKeyFile is where a first start leaves the archive's private key
// when the configuration names no public key.
const PrivateKeyFile = "archive-private-key.asc"

// EnsureKey returns the archive's public key: the one the configuration
// names, or, when it names none, one made on first start. Then the private
// half waits in data_dir, and warning says to move it offline: while it is
// on the server, a stolen disk reveals the record.
func EnsureKey(dataDir, publicKeyPath string) (openpgp.EntityList, string, error) {
	if publicKeyPath != "" {
		el, err := readKeys(publicKeyPath)
		if err != nil {
			return nil, "", fmt.Errorf("archive.public_key: %w", err)
		}
		for _, e := range el {
			if e.PrivateKey != nil {
				return nil, "", fmt.Errorf("archive.public_key %s holds a private key: give the relay only the public half", publicKeyPath)
			}
			if _, ok := e.EncryptionKey(time.Now()); !ok {
				return nil, "", fmt.Errorf("archive.public_key %s cannot encrypt (expired, revoked, or no encryption key)", publicKeyPath)
			}
		}
		return el, "", nil
	}
	pubPath := filepath.Join(dataDir, "archive-public-key.asc")
	privPath := filepath.Join(dataDir, PrivateKeyFile)
	warning := fmt.Sprintf("the archive's private key is still at %s: move it offline (an auditor's or the owner's machine) and set archive.public_key to %s; while it is on this server a stolen disk reveals the record", privPath, pubPath)
	if el, err := readKeys(pubPath); err == nil {
		if _, err := os.Stat(privPath); errors.Is(err, os.ErrNotExist) {
			warning = ""
		}
		return el, warning, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, "", err
	}
	priv, pub, err := NewKeyPair("sealpost archive", "archive@sealpost.invalid")
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", err
	}
	if err := writeFileSync(privPath, priv); err != nil {
		return nil, "", err
	}
	if err := writeFileSync(pubPath, pub); err != nil {
		return nil, "", err
	}
	el, err := readKeys(pubPath)
	return el, warning, err
}

func readKeys(path string) (openpgp.EntityList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(b, []byte("-----BEGIN PGP")) {
		return openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	}
	return openpgp.ReadKeyRing(bytes.NewReader(b))
}

// LoadPrivateKey reads the archive's private key for an export, unlocking
// it when it is protected with the first of the passphrases that opens it
// (after a change of archive key, each key may have its own).
func LoadPrivateKey(path string, passphrases func() ([][]byte, error)) (openpgp.EntityList, error) {
	el, err := readKeys(path)
	if err != nil {
		return nil, fmt.Errorf("archive key %s: %w", path, err)
	}
	var locked bool
	for _, e := range el {
		if e.PrivateKey == nil {
			return nil, fmt.Errorf("archive key %s is a public key; exports need the private key", path)
		}
		if e.PrivateKey.Encrypted {
			locked = true
		}
		for _, sk := range e.Subkeys {
			if sk.PrivateKey != nil && sk.PrivateKey.Encrypted {
				locked = true
			}
		}
	}
	if !locked {
		return el, nil
	}
	if passphrases == nil {
		return nil, fmt.Errorf("archive key %s is protected by a passphrase: give --passphrase-file", path)
	}
	pps, err := passphrases()
	if err != nil {
		return nil, err
	}
	for _, pp := range pps {
		pp = []byte(strings.TrimRight(string(pp), "\r\n"))
		// A wrong passphrase leaves a key as it was, so the next can be tried.
		if unlockAll(el, pp) {
			return el, nil
		}
	}
	if len(pps) == 1 {
		return nil, fmt.Errorf("archive key %s: wrong passphrase", path)
	}
	return nil, fmt.Errorf("archive key %s: none of the %d passphrases opens it", path, len(pps))
}

func unlockAll(el openpgp.EntityList, pp []byte) bool {
	for _, e := range el {
		if err := e.DecryptPrivateKeys(pp); err != nil {
			return false
		}
	}
	return true
}

// NewKeyPair makes an OpenPGP key (Ed25519 primary, X25519 encryption
// subkey: what GnuPG 2.2, Sequoia and RNP all read) and returns its private
// and public halves, armored. The private half has no passphrase: keep it
// in a file only its owner can read, or protect it with gpg afterwards.
func NewKeyPair(name, email string) (private, public []byte, err error) {
	e, err := openpgp.NewEntity(name, "", email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519})
	if err != nil {
		return nil, nil, err
	}
	var priv, pub bytes.Buffer
	w, err := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, nil, err
	}
	if err := e.SerializePrivate(w, nil); err != nil {
		return nil, nil, err
	}
	w.Close()
	if w, err = armor.Encode(&pub, openpgp.PublicKeyType, nil); err != nil {
		return nil, nil, err
	}
	if err := e.Serialize(w); err != nil {
		return nil, nil, err
	}
	w.Close()
	return priv.Bytes(), pub.Bytes(), nil
}

// errKeyMissing is returned by Open when a key file of an archive that
// already holds records is missing: it is to be restored from a backup.
var errKeyMissing = errors.New("a key of the archive is missing")

// isNewArchive says whether the archive in dir holds nothing yet: no
// segment with a byte in it.
func isNewArchive(dir string) (bool, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return false, fmt.Errorf("archive: %w", err)
	}
	for _, s := range segs {
		fi, err := os.Stat(filepath.Join(dir, s))
		if err != nil {
			return false, fmt.Errorf("archive: %w", err)
		}
		if fi.Size() > 0 {
			return false, nil
		}
	}
	return true, nil
}

func keyMissing(path, what string) error {
	return fmt.Errorf("archive: %w: %s is missing, but the archive already holds records: restore it from a backup of %s (%s); a new key is made only for a new archive",
		errKeyMissing, path, filepath.Dir(path), what)
}

// loadOrMakeSealKey returns the Ed25519 key that seals closed segments;
// its public half (seal.pub) goes into every export. It is made only for a
// new archive (fresh).
func loadOrMakeSealKey(dir string, fresh bool) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, "seal.key")
	pubPath := filepath.Join(dir, "seal.pub")
	b, err := os.ReadFile(path)
	if err == nil {
		seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("archive: %s is not a seal key", path)
		}
		priv := ed25519.NewKeyFromSeed(seed)
		// A first start that stopped between the two files left no seal.pub.
		if _, err := os.Stat(pubPath); errors.Is(err, os.ErrNotExist) {
			if err := writeFileSync(pubPath, []byte(hex.EncodeToString(priv.Public().(ed25519.PublicKey))+"\n")); err != nil {
				return nil, err
			}
		}
		return priv, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if !fresh {
		return nil, keyMissing(path, "without it, segments cannot be sealed so that the chain verifies against seal.pub")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(path, []byte(hex.EncodeToString(priv.Seed())+"\n")); err != nil {
		return nil, err
	}
	if err := writeFileSync(pubPath, []byte(hex.EncodeToString(pub)+"\n")); err != nil {
		return nil, err
	}
	return priv, nil
}

// loadOrMakeHashKey returns the key of the address hashes; it is made only
// for a new archive (fresh).
func loadOrMakeHashKey(dir string, fresh bool) ([]byte, error) {
	path := filepath.Join(dir, "address-hash.key")
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err == nil {
		return nil, fmt.Errorf("archive: %s is damaged", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if !fresh {
		return nil, keyMissing(path, "without it, the records of clients already in the archive are not found by holds or export --client")
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return key, writeFileSync(path, key)
}
