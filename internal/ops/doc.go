// Package ops serves the HTTP listeners beside SMTP: /metrics, /healthz and
// /readyz for the operator (keep them on loopback or a management network),
// and the handler that gives mail clients their settings, over HTTP and
// HTTPS.
//
// It decides what "ready" means (Readiness) and runs the listeners; the
// metrics and the settings are the relay's, handed to it.
package ops
