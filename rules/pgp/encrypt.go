package pgp

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/bufpool"
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

// Encrypter makes PGP/MIME copies (rules.Encrypter), and the Autocrypt
// header that offers the practice key (rules.AutocryptSource).
type Encrypter struct {
	keys     *Keyring
	practice *openpgp.Entity
	now      func() time.Time

	autocryptMu sync.Mutex
	autocrypt   map[string]string // by address: the practice's addresses only
}

// NewEncrypter encrypts to keys from k, and also to the practice key, which
// signs every copy, when one is given.
func NewEncrypter(k *Keyring, practice *openpgp.Entity) *Encrypter {
	return &Encrypter{keys: k, practice: practice, now: k.now, autocrypt: map[string]string{}}
}

// AutocryptHeader is the value of an Autocrypt header (autocrypt.org,
// Level 1) that offers the practice key for address, one of the
// practice's own: "addr=ADDRESS; keydata=" and the key, base64, folded.
// The key is the least a receiver needs: the primary key, a user ID for
// address with its self-signature, and the encryption subkey with its
// binding, no private part. A practice key without a user ID for address
// (init makes one for practice@DOMAIN) gets one, certified here with the
// practice key and dated like the key's own, so the header stays the same
// from one start to the next. "" when there is no practice key or it
// cannot encrypt.
func (e *Encrypter) AutocryptHeader(address string) string {
	if e.practice == nil {
		return ""
	}
	e.autocryptMu.Lock()
	defer e.autocryptMu.Unlock()
	v, ok := e.autocrypt[address]
	if !ok {
		keydata, err := autocryptKeydata(e.practice, address, e.now())
		if err == nil {
			v = "addr=" + address + "; keydata=" + foldBase64(keydata)
		}
		e.autocrypt[address] = v
	}
	return v
}

// autocryptKeydata is the minimal public key for address (AutocryptHeader).
func autocryptKeydata(practice *openpgp.Entity, address string, now time.Time) ([]byte, error) {
	enc, ok := practice.EncryptionKey(now)
	if !ok {
		return nil, errors.New("pgp: the practice key cannot encrypt")
	}
	ident := identityFor(practice, address)
	if ident == nil {
		var err error
		if ident, err = certifyAddress(practice, address); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	err := practice.PrimaryKey.Serialize(&b)
	if err == nil {
		err = ident.UserId.Serialize(&b)
	}
	if err == nil {
		err = ident.SelfSignature.Serialize(&b)
	}
	for _, sub := range practice.Subkeys {
		if err == nil && sub.PublicKey.KeyId == enc.PublicKey.KeyId {
			if err = sub.PublicKey.Serialize(&b); err == nil {
				err = sub.Sig.Serialize(&b)
			}
		}
	}
	return b.Bytes(), err
}

// identityFor is the practice key's own user ID for address, if it has one.
func identityFor(e *openpgp.Entity, address string) *openpgp.Identity {
	for _, id := range e.Identities {
		if id.UserId != nil && strings.EqualFold(id.UserId.Email, address) && id.SelfSignature != nil {
			return id
		}
	}
	return nil
}

// certifyAddress makes a user ID for address, under the practice's name,
// self-signed with the practice key on a copy of the entity (the practice
// key itself, which signs copies meanwhile, is not changed). Its
// signature carries the key's expiry, and the date of the key's newest
// self-signature.
func certifyAddress(practice *openpgp.Entity, address string) (*openpgp.Identity, error) {
	primary := practice.PrimaryIdentity()
	name, dated, lifetime := "", practice.PrimaryKey.CreationTime, uint32(0)
	if primary != nil && primary.SelfSignature != nil {
		name, dated = primary.UserId.Name, primary.SelfSignature.CreationTime
		if primary.SelfSignature.KeyLifetimeSecs != nil {
			lifetime = *primary.SelfSignature.KeyLifetimeSecs
		}
	}
	cp := *practice
	cp.Identities = map[string]*openpgp.Identity{}
	config := &packet.Config{Time: func() time.Time { return dated }, DefaultHash: crypto.SHA256,
		DefaultCipher: packet.CipherAES256, KeyLifetimeSecs: lifetime}
	if err := cp.AddUserId(name, "", address, config); err != nil {
		return nil, fmt.Errorf("pgp: a user ID for %s: %w", address, err)
	}
	for _, id := range cp.Identities {
		return id, nil
	}
	return nil, errors.New("pgp: no user ID made")
}

// foldBase64 is data in base64, folded into lines of 76 characters, each
// continuation starting with a space: a header field's value.
func foldBase64(data []byte) string {
	s := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(s) > 0 {
		n := min(76, len(s))
		b.WriteString("\r\n ")
		b.WriteString(s[:n])
		s = s[n:]
	}
	return b.String()
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
	to, err := e.keys.entities(ctx, fingerprints)
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
	inner, outer := protectHeaders(h)
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

	aw, err := armorCRLF(bw)
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
	// openpgp.Encrypt takes AES-128 when every key lists it, else AES-256
	// when every key lists that, else AES-128 (which every implementation
	// has), and signs with the practice key when there is one.
	pw, err := openpgp.Encrypt(aw, to, e.practice, &openpgp.FileHints{IsBinary: true}, config)
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

// protectHeaders splits a message's header into the inner entity's (the
// content fields, the protected fields and whatever else a client added)
// and the outer one: only what delivery and threading need, with the
// subject "...".
func protectHeaders(h textproto.Header) (inner, outer textproto.Header) {
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

	// Everything else (Thread-Topic, which Outlook fills with the subject;
	// Keywords; Comments; whatever a client adds) travels in the inner
	// header: seen by the recipient, not by the servers on the way.
	outer = h.Copy()
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
	return inner, outer
}

// armorCRLF starts an ASCII-armored "PGP MESSAGE" on w with CRLF line
// ends. armor.Encode writes the CRC-24 checksum, which RFC 9580 makes
// optional but without which GnuPG 2.2 (Debian 12) refuses the armor.
func armorCRLF(w *bufio.Writer) (io.WriteCloser, error) {
	aw, err := armor.Encode(crlfWriter{w}, "PGP MESSAGE", nil)
	return &endLine{aw, w}, err
}

// endLine ends the armor's last line, which the armor writer leaves open.
type endLine struct {
	io.WriteCloser
	w *bufio.Writer
}

func (e *endLine) Close() error {
	if err := e.WriteCloser.Close(); err != nil {
		return err
	}
	_, err := e.w.WriteString("\r\n")
	return err
}

// crlfWriter ends the armor's lines with CRLF, as a MIME body wants: the
// armor writer ends them with LF alone, and never writes a CR.
type crlfWriter struct{ w *bufio.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	n := 0
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			m, err := c.w.Write(p)
			return n + m, err
		}
		if _, err := c.w.Write(p[:i]); err != nil {
			return n, err
		}
		if _, err := c.w.WriteString("\r\n"); err != nil {
			return n, err
		}
		n += i + 1
		p = p[i+1:]
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
