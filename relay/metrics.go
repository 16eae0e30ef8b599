package relay

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/relay/queue"
	"github.com/sealpost/sealpost/relay/submission"
)

// Metrics are the relay's counters for Prometheus: the SMTP side's
// (accepted, refused by stage and reason, failed logins and handshakes) and
// the queue's (deliveries, deferrals, bounces, the queue's size and age).
// Labels carry only fixed names, never an address or anything from a
// message.
type Metrics struct {
	smtp  *submission.Metrics
	queue *queue.Metrics
}

// NewMetrics registers the relay's counters with reg (nil: a registry of
// their own); New adds the queue's gauges when the Server is made.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Metrics{smtp: submission.NewMetrics(reg), queue: queue.NewMetrics(reg)}
}

// UpstreamLastOK is when sealpost last reached the provider (connected,
// TLS verified, logged in); zero if never since the start.
func (m *Metrics) UpstreamLastOK() time.Time { return m.queue.UpstreamLastOK() }
