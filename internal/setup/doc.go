// Package setup makes a first installation (sealpost init): a configuration
// that loads, the practice's and the archive's key pairs, a local CA and a
// certificate, a certificate request for a public CA, and the first
// account's password.
//
// It only creates files, never replacing one but the packaged placeholder
// configuration; it starts nothing, and what the admin is told is the
// command's to print.
package setup
