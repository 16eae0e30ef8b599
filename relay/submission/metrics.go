package submission

import (
	"crypto/tls"
	"net"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the SMTP side's counters for Prometheus. Labels carry only
// fixed names (a stage, a reply's reason), never an address or anything
// from a message.
type Metrics struct {
	accepted     prometheus.Counter
	refused      *prometheus.CounterVec // stage, reason
	authFailures *prometheus.CounterVec // reason
	tlsFailed    prometheus.Counter
}

// NewMetrics registers the SMTP side's counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealpost_messages_accepted_total",
			Help: "Messages answered 250: in the spool and in the archive."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealpost_refusals_total",
			Help: "Replies refusing a command, by SMTP stage and reason."}, []string{"stage", "reason"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealpost_auth_failures_total",
			Help: "Refused logins, by reason."}, []string{"reason"}),
		tlsFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealpost_tls_handshake_failures_total",
			Help: "TLS handshakes a client started and that failed (old TLS versions, an untrusted certificate)."}),
	}
	reg.MustRegister(m.accepted, m.refused, m.authFailures, m.tlsFailed)
	// Alerts compare rates; a series that appears only with its first
	// refusal has no rate to compare, so every one exists at 0 from the start.
	for stage, reasons := range refusalSeries {
		for _, reason := range reasons {
			m.refused.WithLabelValues(stage, reason)
		}
	}
	for _, reason := range authFailureReasons {
		m.authFailures.WithLabelValues(reason)
	}
	return m
}

// refusalSeries are the stages and the reasons (reply.go) a refusal is
// counted under in each; TestEveryReasonHasASeries keeps it complete.
var refusalSeries = map[string][]string{
	"connect": {"too_many_connections", "too_many_from_address", "early_talker"},
	"command": {"tls_required", "too_many_errors", "long_command", "other_permanent"},
	"ehlo":    {"long_command"},
	"auth":    {"tls_required", "bad_credentials", "auth_throttled", "unknown_mechanism", "bad_auth_data", "long_command"},
	"mail":    {"auth_required", "null_sender", "bad_address", "sender_not_allowed", "long_command"},
	"rcpt":    {"auth_required", "bad_address", "recipient_policy", "shutting_down", "policy_unavailable", "temporary"},
	"data": {"auth_required", "recipient_policy", "partial_send", "content_rule", "malformed", "too_big", "smuggling", "nul_byte",
		"long_line", "header_too_big", "no_from", "header_sender_not_allowed", "bad_address", "other_permanent",
		"data_deadline", "data_timeout", "temporary", "policy_unavailable", "storage_full", "shutting_down"},
}

// authFailureReasons label sealpost_auth_failures_total.
var authFailureReasons = []string{"bad_credentials", "throttled"}

// countTLS wraps a server TLS configuration so that a connection notes that
// the client's hello arrived: from then on a failure counts (socket).
// The server's own callbacks cannot tell success: in TLS 1.3 they run
// before the client has accepted the certificate.
func (m *Metrics) countTLS(base *tls.Config) *tls.Config {
	if base == nil {
		return nil
	}
	c := base.Clone()
	prev := base.GetConfigForClient
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if g := asSocket(hello.Conn); g != nil {
			g.tlsStarted.Store(true)
		}
		if prev != nil {
			return prev(hello)
		}
		return nil, nil
	}
	return c
}

func asSocket(c net.Conn) *socket {
	g, _ := c.(*socket)
	return g
}
