package rules

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message/textproto"

	"github.com/sealpost/sealpost/internal/bufpool"
)

// A message the sender's client claims to have encrypted goes to key holders
// as it is only when its structure is that of an encrypted message, checked
// without decrypting anything:
//
//   - PGP/MIME (RFC 3156): multipart/encrypted with protocol
//     application/pgp-encrypted, exactly two parts: application/pgp-encrypted
//     holding "Version: 1", then application/octet-stream holding one armored
//     PGP MESSAGE that passes the packet test below. The preamble may hold
//     only the usual one-line explanation that clients write there, the
//     epilogue nothing but blank lines (verifyPGPMIME, pgpmime.go).
//   - inline OpenPGP: a text/plain body that is one armored PGP MESSAGE and
//     nothing else (verifyArmoredMessage, armoredmessage.go).
//   - S/MIME: application/pkcs7-mime with smime-type enveloped-data (or
//     authenveloped-data) whose body is a CMS ContentInfo of that type with a
//     well-formed EnvelopedData (AuthEnvelopedData): known version, at least
//     one RecipientInfo, encrypted content under a known content-encryption
//     algorithm, nothing after it (verifySMIME, cms.go, on the BER reader of
//     ber.go).
//
// The packet test (verifyPacketStream): one or more session-key packets (tag 1 PKESK, tag 3
// SKESK), then exactly one encrypted-data packet, then nothing. Encrypted
// data is SEIPD (tag 18, v1 or v2) or AEAD Encrypted Data (tag 20, what
// GnuPG writes for keys that ask for OCB): both are integrity protected. The
// legacy Symmetrically Encrypted Data packet (tag 9) has no integrity
// protection and RFC 9580 forbids decrypting it: a message made of it is
// encrypted again by sealpost like any other.
//
// What cannot be checked this way: that the encrypted packets hold
// ciphertext rather than bytes a client put there in clear. The check is
// against mislabelled messages, not against a sender who builds packets by
// hand.

// errNotEncrypted is wrapped by every reason a claimed encryption fails.
var errNotEncrypted = errors.New("not encrypted")

// notEncrypted is the reason a claimed encryption fails, wrapping
// errNotEncrypted.
func notEncrypted(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errNotEncrypted, fmt.Sprintf(format, args...))
}

// Kinds of client encryption that pass through.
const (
	kindPGPMIME   = "PGP/MIME"
	kindInlinePGP = "inline OpenPGP"
	kindSMIME     = "S/MIME"
)

// verifyEncrypted reads a whole message and reports what kind of client
// encryption it is, or an error (wrapping errNotEncrypted; an error of r's
// is among them) when it is not certainly encrypted as a whole. Lines over
// 998 octets fail it: a message passed through must be sendable as it is.
func verifyEncrypted(r io.Reader) (string, error) {
	kind, err := verifyEncryptedMessage(r)
	if err != nil && !errors.Is(err, errNotEncrypted) {
		err = fmt.Errorf("%w: %w", errNotEncrypted, err)
	}
	return kind, err
}

func verifyEncryptedMessage(r io.Reader) (string, error) {
	br := bufpool.Reader(&lineLimitReader{r: r})
	defer bufpool.PutReader(br)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return "", notEncrypted("header: %v", err)
	}
	mt, params := contentType(h)
	cte := transferEncoding(h)
	switch mt {
	case "multipart/encrypted":
		if !strings.EqualFold(params["protocol"], "application/pgp-encrypted") {
			return "", notEncrypted("multipart/encrypted of protocol %q", params["protocol"])
		}
		if !isIdentityEncoding(cte) {
			return "", notEncrypted("multipart with transfer encoding %q", cte)
		}
		return kindPGPMIME, verifyPGPMIME(br, params["boundary"])
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		return kindSMIME, verifySMIME(br, params["smime-type"], cte)
	case "text/plain":
		if isAttachment(h) || !isIdentityEncoding(cte) {
			return "", notEncrypted("text/plain attachment or transfer encoding %q", cte)
		}
		return kindInlinePGP, verifyArmoredMessage(br)
	}
	return "", notEncrypted("type %s", mt)
}
