package rules

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"strings"
)

// S/MIME bodies (CMS, RFC 5652 and RFC 5083) are checked by their
// structure, read with the BER reader of ber.go: that an enveloped one is
// well formed as a whole (verifyCMSEnveloped), and what an opaque-signed
// one carries (cmsSignedContent). The depth given to children is how deep
// the element read is nested in the ContentInfo.

// maxEncryptedDER bounds an S/MIME body read into memory: more than the
// body of a message within the relay's default size limit (35 MiB).
const maxEncryptedDER = 64 << 20

// verifySMIME checks an application/pkcs7-mime body: what its smime-type
// says, the transfer encoding undone, must be a CMS ContentInfo of that type.
func verifySMIME(body io.Reader, smimeType, cte string) error {
	var want string
	switch strings.ToLower(smimeType) {
	case "enveloped-data":
		want = "enveloped-data"
	case "authenveloped-data":
		want = "authenveloped-data"
	default:
		return notEncrypted("smime-type %q", smimeType)
	}
	dec, err := decodeCTE(body, cte)
	if err != nil {
		return notEncrypted("transfer encoding %q", cte)
	}
	der, err := io.ReadAll(io.LimitReader(dec, maxEncryptedDER+1))
	if err != nil {
		return notEncrypted("the body cannot be decoded: %v", err)
	}
	if len(der) > maxEncryptedDER {
		return notEncrypted("larger than %d MiB", maxEncryptedDER>>20)
	}
	return verifyCMSEnveloped(der, want)
}

// oidContent is the contents of an OBJECT IDENTIFIER's encoding, which is
// what readBER gives for it.
func oidContent(oid asn1.ObjectIdentifier) string {
	b, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return string(b[2:]) // tag and one-octet length: every OID here is short
}

var (
	oidEnvelopedData     = oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3})
	oidAuthEnvelopedData = oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23})
	oidSignedData        = oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2})

	// contentCiphers are the content-encryption algorithms S/MIME clients
	// use, with their block size (0: no padding to blocks).
	contentCiphers = map[string]int{
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}):     16, // aes128-CBC
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}):    16, // aes192-CBC
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}):    16, // aes256-CBC
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}):     0,  // aes128-GCM
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 26}):    0,  // aes192-GCM
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}):    0,  // aes256-GCM
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 7}):     0,  // aes128-CCM
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 27}):    0,  // aes192-CCM
		oidContent(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 47}):    0,  // aes256-CCM
		oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 18}): 0,  // ChaCha20-Poly1305
		oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}):            8,  // des-ede3-cbc
		oidContent(asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 2}):            8,  // rc2-cbc
		oidContent(asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}):                  8,  // des-cbc
		oidContent(asn1.ObjectIdentifier{1, 2, 392, 200011, 61, 1, 1, 1, 2}):  16, // camellia128-cbc
		oidContent(asn1.ObjectIdentifier{1, 2, 392, 200011, 61, 1, 1, 1, 3}):  16, // camellia192-cbc
		oidContent(asn1.ObjectIdentifier{1, 2, 392, 200011, 61, 1, 1, 1, 4}):  16, // camellia256-cbc
	}
)

// verifyCMSEnveloped checks a ContentInfo holding EnvelopedData
// ("enveloped-data") or AuthEnvelopedData ("authenveloped-data"; "" takes
// either), with nothing after it.
func verifyCMSEnveloped(der []byte, want string) error {
	if err := checkEnvelopedContentInfo(der, want); err != nil {
		return notEncrypted("CMS: %v", err)
	}
	return nil
}

// checkEnvelopedContentInfo is verifyCMSEnveloped's check.
func checkEnvelopedContentInfo(der []byte, want string) error {
	ci, rest, err := readBER(der, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("data after the ContentInfo")
	}
	if !ci.is(berUniversal, tagSequence, true) {
		return errors.New("not a ContentInfo")
	}
	kids, err := ci.children(0)
	if err != nil {
		return err
	}
	if len(kids) != 2 || !kids[0].is(berUniversal, tagOID, false) || !kids[1].is(berContext, 0, true) {
		return errors.New("not a ContentInfo")
	}
	var auth bool
	switch oid := string(kids[0].content); {
	case oid == oidEnvelopedData && want != "authenveloped-data":
	case oid == oidAuthEnvelopedData && want != "enveloped-data":
		auth = true
	default:
		return fmt.Errorf("content type is not %s", want)
	}
	inner, err := kids[1].children(1)
	if err != nil {
		return err
	}
	if len(inner) != 1 || !inner[0].is(berUniversal, tagSequence, true) {
		return errors.New("content is not one SEQUENCE")
	}
	return checkEnvelopedData(inner[0], auth)
}

// checkEnvelopedData checks EnvelopedData (RFC 5652 6.1) or AuthEnvelopedData
// (RFC 5083 2.1): they differ after the encrypted content.
func checkEnvelopedData(e berElement, auth bool) error {
	f, err := e.children(2)
	if err != nil {
		return err
	}
	at := func(i int) berElement {
		if i < len(f) {
			return f[i]
		}
		return berElement{class: 0xff}
	}
	i := 0
	v, ok := at(i).smallInt()
	if !ok || (auth && v != 0) || (!auth && v != 0 && v != 2 && v != 3 && v != 4) {
		return errors.New("version")
	}
	i++
	if at(i).is(berContext, 0, true) { // originatorInfo
		i++
	}
	if !at(i).is(berUniversal, tagSet, true) {
		return errors.New("no RecipientInfos")
	}
	ris, err := at(i).children(3)
	if err != nil {
		return err
	}
	if len(ris) == 0 {
		return errors.New("no RecipientInfo")
	}
	for _, ri := range ris {
		if err := checkRecipientInfo(ri); err != nil {
			return fmt.Errorf("RecipientInfo: %w", err)
		}
	}
	i++
	if err := checkEncryptedContentInfo(at(i)); err != nil {
		return err
	}
	i++
	if auth {
		if at(i).is(berContext, 1, true) { // authAttrs
			i++
		}
		mac := at(i)
		if mac.class != berUniversal || mac.tag != tagOctetString {
			return errors.New("no MAC")
		}
		if n, err := mac.octets(3); err != nil || n == 0 {
			return errors.New("empty MAC")
		}
		i++
		if at(i).is(berContext, 2, true) { // unauthAttrs
			i++
		}
	} else if at(i).is(berContext, 1, true) { // unprotectedAttrs
		i++
	}
	if i != len(f) {
		return errors.New("fields after the end")
	}
	return nil
}

// checkRecipientInfo checks the choices of RFC 5652 6.2 by their fixed fields.
func checkRecipientInfo(ri berElement) error {
	f, err := ri.children(4)
	if err != nil {
		return err
	}
	octetString := func(e berElement) bool {
		n, err := e.octets(5)
		return e.class == berUniversal && e.tag == tagOctetString && err == nil && n > 0
	}
	seq := func(e berElement) bool { return e.is(berUniversal, tagSequence, true) }
	version := func(want ...int) bool {
		if len(f) == 0 {
			return false
		}
		v, ok := f[0].smallInt()
		for _, w := range want {
			if ok && v == w {
				return true
			}
		}
		return false
	}
	switch {
	case ri.is(berUniversal, tagSequence, true): // KeyTransRecipientInfo
		if len(f) == 4 && version(0, 2) && (seq(f[1]) || f[1].is(berContext, 0, false)) && seq(f[2]) && octetString(f[3]) {
			return nil
		}
	case ri.is(berContext, 1, true): // KeyAgreeRecipientInfo
		ukm := len(f) == 4 || f[2].is(berContext, 1, true)
		if len(f) >= 4 && len(f) <= 5 && ukm && version(3) && f[1].is(berContext, 0, true) && seq(f[len(f)-2]) && seq(f[len(f)-1]) {
			if keys, err := f[len(f)-1].children(5); err == nil && len(keys) > 0 {
				return nil
			}
		}
	case ri.is(berContext, 2, true): // KEKRecipientInfo
		if len(f) == 4 && version(4) && seq(f[1]) && seq(f[2]) && octetString(f[3]) {
			return nil
		}
	case ri.is(berContext, 3, true): // PasswordRecipientInfo
		if len(f) >= 3 && len(f) <= 4 && version(0) && seq(f[len(f)-2]) && octetString(f[len(f)-1]) {
			return nil
		}
	case ri.is(berContext, 4, true): // OtherRecipientInfo
		if len(f) == 2 && f[0].is(berUniversal, tagOID, false) {
			return nil
		}
	}
	return errors.New("not a recipient")
}

// checkEncryptedContentInfo checks that there is encrypted content, under a
// known algorithm, of a length the algorithm can produce.
func checkEncryptedContentInfo(e berElement) error {
	if !e.is(berUniversal, tagSequence, true) {
		return errors.New("no EncryptedContentInfo")
	}
	f, err := e.children(3)
	if err != nil {
		return err
	}
	if len(f) != 3 || !f[0].is(berUniversal, tagOID, false) || !f[1].is(berUniversal, tagSequence, true) {
		return errors.New("EncryptedContentInfo without encrypted content")
	}
	alg, err := f[1].children(4)
	if err != nil || len(alg) == 0 || !alg[0].is(berUniversal, tagOID, false) {
		return errors.New("content-encryption algorithm")
	}
	block, known := contentCiphers[string(alg[0].content)]
	if !known {
		return errors.New("unknown content-encryption algorithm")
	}
	if f[2].class != berContext || f[2].tag != 0 {
		return errors.New("no encrypted content")
	}
	n, err := f[2].octets(4)
	if err != nil {
		return err
	}
	if n == 0 || (block > 0 && (n < block || n%block != 0)) {
		return fmt.Errorf("encrypted content of %d octets", n)
	}
	return nil
}

// cmsSignedContent returns what an opaque-signed S/MIME body carries: the
// encapsulated content of a CMS SignedData (RFC 5652 5.1), a MIME entity
// in clear; false when der is not that.
func cmsSignedContent(der []byte) ([]byte, bool) {
	ci, rest, err := readBER(der, 0)
	if err != nil || len(rest) != 0 || !ci.is(berUniversal, tagSequence, true) {
		return nil, false
	}
	kids, err := ci.children(0)
	if err != nil || len(kids) != 2 || !kids[0].is(berUniversal, tagOID, false) || string(kids[0].content) != oidSignedData ||
		!kids[1].is(berContext, 0, true) {
		return nil, false
	}
	inner, err := kids[1].children(1)
	if err != nil || len(inner) != 1 || !inner[0].is(berUniversal, tagSequence, true) {
		return nil, false
	}
	f, err := inner[0].children(2)
	if err != nil || len(f) < 3 || !f[2].is(berUniversal, tagSequence, true) {
		return nil, false
	}
	eci, err := f[2].children(3)
	if err != nil || len(eci) != 2 || !eci[1].is(berContext, 0, true) {
		return nil, false
	}
	octets, err := eci[1].children(4)
	if err != nil || len(octets) != 1 || octets[0].class != berUniversal || octets[0].tag != tagOctetString {
		return nil, false
	}
	content, err := octets[0].octetBytes(5)
	return content, err == nil
}
