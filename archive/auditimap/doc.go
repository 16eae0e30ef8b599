// Package auditimap serves the clinical record read-only over IMAP, for an
// auditor or the practice owner in a mail client: one mailbox per client
// (both directions), one per month, and All. Nothing can be changed:
// every command that would is answered NO.
//
// It reads the archive through archive.View with the archive's private key,
// and only reads: it must never write to the archive or hand out a record
// to anyone but a viewer who logged in over TLS.
package auditimap
