// Package submission is the SMTP service therapists' mail clients talk to,
// on the STARTTLS port and the implicit-TLS port: connection limits, the
// dialogue before TLS and the handshake, logins (accounts, the throttle,
// SASL PLAIN and LOGIN, password hashes), the session go-smtp drives, the
// checks of a message's lines and header section, and every reply a client
// sees, from one table of named replies that carry their metric label
// (reply.go). It also tells mail clients how to set themselves up
// (autoconfig).
//
// sealpost owns the session's plaintext beneath go-smtp (wire.go): it
// answers before TLS itself and reads DATA a block at a time; what that
// relies on in go-smtp is pinned by gosmtp_contract_test.go.
//
// It hands each recipient and each message to its Relay (the relay
// package) and imports neither the queue nor the provider: it does not
// spool, decide or deliver.
package submission
