// Package archive is the clinical record: an append-only, hash-chained store,
// encrypted at rest, of every message sealpost accepts or ingests, of the
// reasons each recipient was allowed, and of what became of each copy. It
// verifies without a private key and exports for auditors.
//
// One process writes it (the relay, through Archive: records, holds,
// prunes); verify, export and the read-only IMAP view read it beside that
// writer. Records are encrypted to the archive's public key only, with
// go-crypto; the private key is never needed to write or verify.
//
// The record's vocabulary (decisions, consent events, rule hits) is package
// record's: archive imports neither rules nor relay, and records nothing
// but what it is handed.
package archive
