// Package provider hands copies of messages to the practice's mail provider
// and stands in for one with the outbox (a Maildir below the data dir).
//
// It owns the SMTP dialogue with the provider from the greeting to QUIT:
// verified TLS (implicit or STARTTLS), AUTH (PLAIN, or the account's own
// SASL client for OAuth 2.0), MAIL, RCPT and DATA pipelined (RFC 2920), and
// the message dot-stuffed straight onto the TLS connection. It keeps a few
// logged-in connections per account open between messages.
//
// It is given a Job (one copy, its sender and recipients) and answers with an
// Outcome per recipient; it knows nothing of the spool, the queue or the
// rules, imports no other part of the relay, never sends credentials without
// TLS, and never falls back to sending in clear.
package provider
