// Package console is the practice console: one web page, served by
// `sealpost serve` over HTTPS with the submission certificate, for the
// three people who keep sealpost and use its results. Admins ([[console.admin]])
// see everything and record what a refused recipient lacks; therapists
// (their [[account]]) see their own refusals and queued mail; auditors
// ([[archive.viewer]]) see the record's health and change nothing.
//
// The console reads and changes sealpost only through the small interfaces
// it declares (StatusSource, RefusalSource, Recorder, QueueAdmin), which
// cmd/sealpost wires to the relay, the registry, the keyring and the
// archive; nothing in relay, rules or archive imports it.
//
// Its safety, each with a test: server-side sessions (idle 30 minutes,
// absolute 12 hours, ended at logout and when the login's password hash
// changes), cookies __Host- Secure HttpOnly SameSite=Strict, a CSRF token on
// every form and cross-origin requests refused, a Content-Security-Policy
// that allows the console's own styles only, framing refused, no referrer;
// every route's roles checked on the server from one table (routes.go);
// logins throttled as SMTP AUTH is (internal/loginthrottle); uploads
// limited in size and sniffed; an access log without addresses, subjects or
// query strings. Pages are html/template with embedded assets and need no
// JavaScript.
package console
