// Package pgp keeps recipients' OpenPGP keys and encrypts messages to them as
// PGP/MIME (RFC 3156) that Thunderbird, GnuPG and Sequoia read. It implements
// rules.Keys and rules.Encrypter.
//
// Encryption is go-crypto's alone (openpgp.Encrypt, its armor writer): no
// cipher, mode or checksum is written here. The package decides nothing
// about who may receive what; that is the rules package's.
package pgp
