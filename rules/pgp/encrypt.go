package pgp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/bufpool"
	"github.com/sealpost/sealpost/rules/pgp/seipd"
)

// LoadPracticeKey reads the practice's private key (armored or binary). A
// passphrase-protected key is unlocked with the first line of
// passphraseFile.
func LoadPracticeKey(path, passphraseFile string) (*openpgp.Entity, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("practice key: %w", err)
	}
	var el openpgp.EntityList
	if bytes.Contains(data, []byte("-----BEGIN PGP")) {
		el, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		el, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("practice key %s: %w", path, err)
	}
	if len(el) != 1 {
		return nil, fmt.Errorf("practice key %s: holds %d keys, want one", path, len(el))
	}
	e := el[0]
	if e.PrivateKey == nil {
		return nil, fmt.Errorf("practice key %s: this is a public key; the practice key must be the private key (it signs)", path)
	}
	if e.PrivateKey.Encrypted {
		if passphraseFile == "" {
			return nil, fmt.Errorf("practice key %s is protected by a passphrase: set pgp.practice_key_passphrase_file", path)
		}
		pp, err := os.ReadFile(passphraseFile)
		if err != nil {
			return nil, fmt.Errorf("practice key passphrase: %w", err)
		}
		pass := []byte(strings.TrimRight(strings.SplitN(string(pp), "\n", 2)[0], "\r"))
		if err := e.DecryptPrivateKeys(pass); err != nil {
			return nil, fmt.Errorf("practice key %s: wrong passphrase: %w", path, err)
		}
	}
	if _, ok := e.SigningKey(time.Now()); !ok {
		return nil, fmt.Errorf("practice key %s cannot sign (expired, revoked, or no signing key)", path)
	}
	if _, ok := e.EncryptionKey(time.Now()); !ok {
		return nil, fmt.Errorf("practice key %s has no usable encryption subkey: copies must also be encrypted to it", path)
	}
	return e, nil
}

// Encrypter makes PGP/MIME copies (rules.Encrypter).
type Encrypter struct {
	keys     *Keyring
	practice *openpgp.Entity
	now      func() time.Time
}

// NewEncrypter encrypts to keys from k, and also to the practice key, which
// signs every copy, when one is given.
func NewEncrypter(k *Keyring, practice *openpgp.Entity) *Encrypter {
	return &Encrypter{keys: k, practice: practice, now: k.now}
}

// protectedHeaders travel inside the encryption (draft-autocrypt-lamps-
// protected-headers, as Thunderbird writes them); outside, the subject is
// "...".
var protectedHeaders = []string{"Subject", "From", "To", "Cc", "Reply-To", "Date", "Message-Id", "In-Reply-To", "References"}

func isProtected(lowerKey string) bool {
	for _, p := range protectedHeaders {
		if strings.EqualFold(p, lowerKey) {
			return true
		}
	}
	return false
}

// outerHeaders are the fields an encrypted copy shows outside the
// encryption (lower case): addressing, threading, trace and the practice's
// Autocrypt key. The subject outside is "...".
var outerHeaders = map[string]bool{
	"from": true, "sender": true, "reply-to": true, "to": true, "cc": true, "date": true,
	"message-id": true, "in-reply-to": true, "references": true, "received": true, "return-path": true,
	"auto-submitted": true, "autocrypt": true, "disposition-notification-to": true,
}

// EncryptMIME reads a complete message and writes it as RFC 3156
// multipart/encrypted, encrypted to the keys with these fingerprints and to
// the practice key, signed by the practice key. It streams: the body is
// read once and written as it is encrypted.
func (e *Encrypter) EncryptMIME(ctx context.Context, w io.Writer, msg io.Reader, fingerprints []string) error {
	if len(fingerprints) == 0 {
		return errors.New("pgp: no recipient keys")
	}
	to, err := e.keys.Entities(ctx, fingerprints)
	if err != nil {
		return err
	}
	now := e.now()
	for _, r := range to {
		if _, ok := r.EncryptionKey(now); !ok {
			return fmt.Errorf("pgp: key %s can no longer encrypt", Fingerprint(r))
		}
	}
	if e.practice != nil {
		to = append(to, e.practice)
	}
	br := bufpool.Reader(msg)
	defer bufpool.PutReader(br)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return fmt.Errorf("pgp: message header: %w", err)
	}

	// The inner entity: the content headers and the protected headers.
	var inner textproto.Header
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, params = "application/octet-stream", map[string]string{}
	}
	delete(params, "protected-headers")
	// Header.Add puts a field on top: added in reverse, they read in order
	// (Content-Type, the other content fields, then the protected ones).
	for i := len(protectedHeaders) - 1; i >= 0; i-- {
		vs := h.Values(protectedHeaders[i])
		for j := len(vs) - 1; j >= 0; j-- {
			inner.Add(protectedHeaders[i], vs[j])
		}
	}
	var contentFields [][2]string
	for f := h.Fields(); f.Next(); {
		if strings.HasPrefix(strings.ToLower(f.Key()), "content-") && !strings.EqualFold(f.Key(), "Content-Type") {
			contentFields = append(contentFields, [2]string{f.Key(), f.Value()})
		}
	}
	for i := len(contentFields) - 1; i >= 0; i-- {
		inner.Add(contentFields[i][0], contentFields[i][1])
	}
	inner.Add("Content-Type", mime.FormatMediaType(mt, params)+`; protected-headers="v1"`)

	// The outer header: only what delivery and threading need. Everything
	// else (Thread-Topic, which Outlook fills with the subject; Keywords;
	// Comments; whatever a client adds) travels in the inner header: seen
	// by the recipient, not by the servers on the way.
	outer := h.Copy()
	var others [][2]string
	for f := outer.Fields(); f.Next(); {
		k := strings.ToLower(f.Key())
		switch {
		case outerHeaders[k]:
		case k == "bcc" || k == "mime-version" || k == "subject" || strings.HasPrefix(k, "content-"):
			f.Del()
		default:
			if !isProtected(k) {
				others = append(others, [2]string{f.Key(), f.Value()})
			}
			f.Del()
		}
	}
	for i := len(others) - 1; i >= 0; i-- {
		inner.Add(others[i][0], others[i][1])
	}
	outer.Set("Subject", "...")
	boundary := "sealpost-pgp-" + randomHex(12)
	outer.Set("MIME-Version", "1.0")
	outer.Set("Content-Type", mime.FormatMediaType("multipart/encrypted",
		map[string]string{"protocol": "application/pgp-encrypted", "boundary": boundary}))

	bw := bufpool.Writer(w)
	defer bufpool.PutWriter(bw)
	if err := textproto.WriteHeader(bw, outer); err != nil {
		return err
	}
	fmt.Fprintf(bw, "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n")
	fmt.Fprintf(bw, "--%s\r\nContent-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n", boundary)
	fmt.Fprintf(bw, "--%s\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\nContent-Description: OpenPGP encrypted message\r\nContent-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n", boundary)

	aw, err := newArmorWriter(bw)
	if err != nil {
		return err
	}
	config := &packet.Config{
		DefaultHash: crypto.SHA256,
		Time:        e.now,
		// SEIPDv2 (AEAD) only when every recipient key asks for it: GnuPG 2.2
		// and older Thunderbird read only SEIPDv1, which is used otherwise.
		AEADConfig: &packet.AEADConfig{},
	}
	pw, err := e.encrypt(aw, to, config)
	if err != nil {
		return fmt.Errorf("pgp: %w", err)
	}
	if err := textproto.WriteHeader(pw, inner); err != nil {
		return err
	}
	if _, err := io.Copy(pw, br); err != nil {
		return fmt.Errorf("pgp: %w", err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("pgp: %w", err)
	}
	if err := aw.Close(); err != nil {
		return err
	}
	fmt.Fprintf(bw, "\r\n--%s--\r\n", boundary)
	return bw.Flush()
}

// encrypt starts the OpenPGP message: the session key encrypted to every
// key in to, then the encrypted data holding the literal data signed by the
// practice key. SEIPDv2 (AEAD) is go-crypto's, used when every key asks for
// it; SEIPDv1, what most keys get, is written by package seipd, whose CFB
// is block-wise (go-crypto's is byte-wise and was the largest cost of an
// encrypted attachment). The cipher is chosen as go-crypto chooses it.
func (e *Encrypter) encrypt(w io.Writer, to []*openpgp.Entity, config *packet.Config) (io.WriteCloser, error) {
	hints := &openpgp.FileHints{IsBinary: true}
	ciphers := []uint8{uint8(packet.CipherAES256), uint8(packet.CipherAES128)}
	aead := config.AEAD() != nil
	keys := make([]openpgp.Key, len(to))
	for i, r := range to {
		k, ok := r.EncryptionKey(config.Now())
		sig, _ := r.PrimarySelfSignature()
		if !ok || sig == nil {
			return nil, fmt.Errorf("key %s cannot encrypt", Fingerprint(r))
		}
		keys[i] = k
		aead = aead && sig.SEIPDv2
		ciphers = slices.DeleteFunc(ciphers, func(c uint8) bool { return !slices.Contains(sig.PreferredSymmetric, c) })
	}
	if aead {
		return openpgp.Encrypt(w, to, e.practice, hints, config)
	}
	cipher := packet.CipherAES128 // what every implementation must have
	if len(ciphers) > 0 {
		cipher = packet.CipherFunction(ciphers[0])
	}
	if slices.Contains(ciphers, uint8(config.Cipher())) {
		cipher = config.Cipher()
	}
	key := make([]byte, cipher.KeySize())
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := packet.SerializeEncryptedKeyAEAD(w, k.PublicKey, cipher, false, key, config); err != nil {
			return nil, err
		}
	}
	sealed, err := seipd.NewWriter(w, cipher, key)
	if err != nil {
		return nil, err
	}
	var inner io.WriteCloser
	if e.practice != nil {
		inner, err = openpgp.Sign(sealed, e.practice, hints, config)
	} else {
		inner, err = packet.SerializeLiteral(nopCloser{sealed}, true, "", 0)
	}
	if err != nil {
		return nil, err
	}
	return &closeBoth{inner, sealed}, nil
}

// closeBoth closes the signed literal data, then the encrypted packet
// around it (which the signer leaves open).
type closeBoth struct {
	io.WriteCloser
	outer io.Closer
}

func (c *closeBoth) Close() error {
	if err := c.WriteCloser.Close(); err != nil {
		return err
	}
	return c.outer.Close()
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
