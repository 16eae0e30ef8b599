package relay

import (
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/rules"
)

// Metrics are the relay's counters for Prometheus. Labels carry only fixed
// reason names, never an address or anything from a message.
type Metrics struct {
	reg prometheus.Registerer

	accepted     prometheus.Counter
	refused      *prometheus.CounterVec // stage, reason
	delivered    prometheus.Counter
	deferred     prometheus.Counter
	bounced      prometheus.Counter
	authFailures *prometheus.CounterVec // reason
	tlsFailed    prometheus.Counter

	upstreamOK atomic.Int64 // unix nanoseconds of the last good contact with the provider
}

// NewMetrics registers the relay's counters with reg; New adds the queue's
// gauges when the Server is made.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealpost_messages_accepted_total",
			Help: "Messages answered 250: in the spool and in the archive."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealpost_refusals_total",
			Help: "Replies refusing a command, by SMTP stage and reason."}, []string{"stage", "reason"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealpost_deliveries_total",
			Help: "Recipients the provider accepted."}),
		deferred: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealpost_deferrals_total",
			Help: "Delivery attempts for a recipient that failed temporarily and will be retried."}),
		bounced: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealpost_bounces_total",
			Help: "Recipients that failed for good; the sender got a notification."}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sealpost_auth_failures_total",
			Help: "Refused logins, by reason."}, []string{"reason"}),
		tlsFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealpost_tls_handshake_failures_total",
			Help: "TLS handshakes a client started and that failed (old TLS versions, an untrusted certificate)."}),
	}
	reg.MustRegister(m.accepted, m.refused, m.delivered, m.deferred, m.bounced, m.authFailures, m.tlsFailed)
	return m
}

// UpstreamLastOK is when sealpost last reached the provider (connected,
// TLS verified, logged in); zero if never since the start.
func (m *Metrics) UpstreamLastOK() time.Time {
	if n := m.upstreamOK.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

func (m *Metrics) upstreamReached(t time.Time) { m.upstreamOK.Store(t.UnixNano()) }

func (m *Metrics) registerQueue(q *queue) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealpost_queue_messages",
			Help: "Messages in the queue (accepted, not yet delivered to every recipient)."},
			func() float64 { n, _ := q.stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealpost_queue_oldest_age_seconds",
			Help: "How long the oldest queued message has waited; 0 when the queue is empty."},
			func() float64 {
				n, oldest := q.stats()
				if n == 0 {
					return 0
				}
				return q.now().Sub(oldest).Seconds()
			}),
	)
}

// knownReasons names the fixed replies for the refusal counter.
var knownReasons = map[*smtp.SMTPError]string{
	errAuthRequired:   "auth_required",
	errNeedTLS:        "tls_required",
	errTLSFirst:       "tls_required",
	errBadCredentials: "bad_credentials",
	errAuthThrottled:  "auth_throttled",
	errUnknownMech:    "unknown_mechanism",
	errBadAuthData:    "bad_auth_data",
	errTooBig:         "too_big",
	errBareLF:         "smuggling",
	errBareCR:         "smuggling",
	errNUL:            "nul_byte",
	errLongLine:       "long_line",
	errLongBodyLine:   "long_line",
	errHeaderTooBig:   "header_too_big",
	errNoFrom:         "no_from",
	errNullSender:     "null_sender",
	errLongCommand:    "long_command",
	errTooManyErrors:  "too_many_errors",
	errShuttingDown:   "shutting_down",
	errTempLocal:      "temporary",
	errPolicyDown:     "policy_unavailable",
	errStorageFull:    "storage_full",
	errDataDeadline:   "data_deadline",
	errDataIdle:       "data_timeout",
}

// refusalReason is the counter label for a refusal: err is what reply was
// given, r what the client was told.
func refusalReason(stage string, err error, r *smtp.SMTPError) string {
	var refusal *rules.Refusal
	if errors.As(err, &refusal) {
		switch {
		case stage == "rcpt" || refusal.Recipient:
			return "recipient_policy"
		case refusal.Malformed:
			return "malformed"
		}
		return "content_rule"
	}
	if name, ok := knownReasons[r]; ok {
		return name
	}
	switch {
	case r.EnhancedCode == smtp.EnhancedCode{5, 1, 3} || r.EnhancedCode == smtp.EnhancedCode{5, 1, 7}:
		return "bad_address"
	case stage == "mail" && r.EnhancedCode == smtp.EnhancedCode{5, 7, 1}:
		return "sender_not_allowed"
	case stage == "data" && r.EnhancedCode == smtp.EnhancedCode{5, 7, 1}:
		return "header_sender_not_allowed"
	case r.Code >= 500:
		return "other_permanent"
	}
	return "other_temporary"
}

// countTLS wraps a server TLS configuration so that a connection notes that
// the client's hello arrived: from then on a failure counts (guardConn).
// The server's own callbacks cannot tell success: in TLS 1.3 they run
// before the client has accepted the certificate.
func (m *Metrics) countTLS(base *tls.Config) *tls.Config {
	if base == nil {
		return nil
	}
	c := base.Clone()
	prev := base.GetConfigForClient
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if g := asGuard(hello.Conn); g != nil {
			g.tlsStarted.Store(true)
		}
		if prev != nil {
			return prev(hello)
		}
		return nil, nil
	}
	return c
}

func asGuard(c net.Conn) *guardConn {
	g, _ := c.(*guardConn)
	return g
}
