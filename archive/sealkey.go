package archive

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// The seal key (seal.key, an Ed25519 key of Go's standard library) signs
// segments, prunes and the head file. An export's SHA256SUMS is signed with
// it too, as OpenPGP, so that an auditor checks an export with gpg and
// sha256sum alone. Its OpenPGP form is a v4 EdDSA key (what GnuPG 2.2 and
// later read) with one self-signed user ID, made from the same key every
// time: the fingerprint the practice publishes once stays valid.
//
// The OpenPGP signatures and the archive's own never meet: an OpenPGP
// signature signs a 32-octet SHA-256 digest, the archive's sign texts
// beginning "sealpost-archive-".

// sealKeyCreated is the creation time of the seal key's OpenPGP form. A v4
// fingerprint covers the creation time, and the seal key's own is not kept
// anywhere, so one fixed date stands for it in every archive.
var sealKeyCreated = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	sealKeyName  = "sealpost archive seal key"
	sealKeyEmail = "seal@archive.sealpost.invalid"
)

// sealOpenPGPPublic is the seal key's public half as an OpenPGP public key
// packet: go-crypto makes EdDSA keys only from its own curve type, which a
// packet it parses carries.
func sealOpenPGPPublic(pub ed25519.PublicKey) (*packet.PublicKey, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("archive: the seal key is not an Ed25519 key")
	}
	// RFC 9580 5.5.2 (version 4), 5.5.5.5 (EdDSALegacy): version, creation
	// time, algorithm 22, the curve's OID (Ed25519Legacy, 1.3.6.1.4.1.11591.15.1),
	// and the point as an MPI of 263 bits: 0x40, then the 32 octets.
	body := []byte{4, 0, 0, 0, 0, byte(packet.PubKeyAlgoEdDSA), 9, 0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01, 0x01, 0x07, 0x40}
	binary.BigEndian.PutUint32(body[1:5], uint32(sealKeyCreated.Unix()))
	body = append(body, pub...)
	p, err := packet.Read(bytes.NewReader(append([]byte{0xC0 | 6, byte(len(body))}, body...)))
	if err != nil {
		return nil, fmt.Errorf("archive: the seal key's OpenPGP form: %w", err)
	}
	pk, ok := p.(*packet.PublicKey)
	if !ok {
		return nil, errors.New("archive: the seal key's OpenPGP form is not a public key")
	}
	return pk, nil
}

// SealKeyFingerprint is the OpenPGP fingerprint of the seal key of the
// archive in dir (from seal.pub: no private key needed), as GnuPG shows
// it: 40 hex digits in groups of four, two spaces between the halves.
func SealKeyFingerprint(dir string) (string, error) {
	pub, err := readSealPub(dir)
	if err != nil {
		return "", err
	}
	pk, err := sealOpenPGPPublic(pub)
	if err != nil {
		return "", err
	}
	return formatFingerprint(pk.Fingerprint), nil
}

func formatFingerprint(fp []byte) string {
	h := strings.ToUpper(hex.EncodeToString(fp))
	var b strings.Builder
	for i := 0; i < len(h); i += 4 {
		switch {
		case i == len(h)/2:
			b.WriteString("  ")
		case i > 0:
			b.WriteString(" ")
		}
		b.WriteString(h[i:min(i+4, len(h))])
	}
	return b.String()
}

// sealEntity is the seal key as an OpenPGP key that can sign: the key
// and its user ID, self-signed at sealKeyCreated so that every export
// carries the same public key.
func sealEntity(priv ed25519.PrivateKey) (*openpgp.Entity, error) {
	pk, err := sealOpenPGPPublic(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	epub, ok := pk.PublicKey.(*eddsa.PublicKey)
	if !ok {
		return nil, errors.New("archive: the seal key's OpenPGP form is not EdDSA")
	}
	esk := eddsa.NewPrivateKey(*epub)
	if err := esk.UnmarshalByteSecret(priv.Seed()); err != nil {
		return nil, err
	}
	sk := packet.NewEdDSAPrivateKey(sealKeyCreated, esk)
	e := &openpgp.Entity{PrimaryKey: &sk.PublicKey, PrivateKey: sk, Identities: map[string]*openpgp.Identity{}}
	if err := e.AddUserId(sealKeyName, "", sealKeyEmail, &packet.Config{Time: func() time.Time { return sealKeyCreated }}); err != nil {
		return nil, fmt.Errorf("archive: the seal key's user ID: %w", err)
	}
	return e, nil
}

// readSealKey reads the archive's private seal key (seal.key) without
// making one: an export reads an archive, never starts one.
func readSealKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, "seal.key")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("archive: %s is missing: the export's SHA256SUMS is signed with it; copy the whole archive folder", path)
	}
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("archive: %s is not a seal key", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// SealKeyOpenPGP is the seal key of the archive in dir as an armored
// OpenPGP public key (what an export carries as seal-key.asc), and its
// fingerprint. It reads the private seal key, to sign the user ID.
func SealKeyOpenPGP(dir string) (armored []byte, fingerprint string, err error) {
	e, err := exportSigner(dir)
	if err != nil {
		return nil, "", err
	}
	var b bytes.Buffer
	if err := writeSealKeyArmored(&b, e); err != nil {
		return nil, "", err
	}
	return b.Bytes(), formatFingerprint(e.PrimaryKey.Fingerprint), nil
}

// writeSealKeyArmored writes the seal key's OpenPGP public key, armored.
func writeSealKeyArmored(w io.Writer, e *openpgp.Entity) error {
	return writeArmoredKeys(w, "the archive's seal key: compare its fingerprint with the one the practice published", e)
}

// writeArmoredKeys writes OpenPGP public keys in one armored block (gpg
// --import takes them all), with a comment for the reader.
func writeArmoredKeys(w io.Writer, comment string, es ...*openpgp.Entity) error {
	aw, err := armor.Encode(w, openpgp.PublicKeyType, map[string]string{"Comment": comment})
	if err != nil {
		return err
	}
	for _, e := range es {
		if err := e.Serialize(aw); err != nil {
			return err
		}
	}
	if err := aw.Close(); err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n")
	return err
}

// signDetached writes an armored detached OpenPGP signature of the file at
// path, made now with the seal key.
func signDetached(w io.Writer, e *openpgp.Entity, path string, now time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := openpgp.ArmoredDetachSign(w, e, f, &packet.Config{Time: func() time.Time { return now }}); err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n")
	return err
}
