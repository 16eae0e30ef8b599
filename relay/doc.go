// Package relay is sealpost's transport, in three rooms that it wires
// together:
//
//   - submission: the SMTP service mail clients talk to (the dialogue, TLS,
//     logins, the header checks, every reply a client sees);
//   - queue: the spool, the delivery schedule, notices to senders, and the
//     `sealpost queue` operations;
//   - provider: the connections to the practice's mail provider (and the
//     outbox that stands in for one).
//
// What happens to a message between the rooms is written here once, in
// order: accept.go takes a message in (spool, header checks, the rules,
// the archive record and the encrypted and sealed copies, both made
// durable, the queue), and decides its recipients at RCPT. The relay asks the rules what
// may go out and hands every accepted message to the archive before it
// answers 250; it decides no policy itself, and no room reaches back into
// an earlier one.
package relay
