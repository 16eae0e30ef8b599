package queue

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the queue's counters for Prometheus, and when the provider
// was last reached. Labels carry nothing from a message.
type Metrics struct {
	reg       prometheus.Registerer
	delivered prometheus.Counter
	deferred  prometheus.Counter
	bounced   prometheus.Counter

	upstreamOK atomic.Int64 // unix nanoseconds of the last good contact with the provider
}

// NewMetrics registers the queue's counters with reg; Open adds its gauges.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealpost_deliveries_total",
			Help: "Recipients the provider accepted."}),
		deferred: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealpost_deferrals_total",
			Help: "Delivery attempts for a recipient that failed temporarily and will be retried."}),
		bounced: prometheus.NewCounter(prometheus.CounterOpts{Name: "sealpost_bounces_total",
			Help: "Recipients that failed for good; the sender got a notification."}),
	}
	reg.MustRegister(m.delivered, m.deferred, m.bounced,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealpost_provider_last_success_timestamp_seconds",
			Help: "When sealpost last reached the provider (connected, TLS verified, logged in: a delivery or a probe), as a Unix time; 0 if not since the start."},
			func() float64 {
				if n := m.upstreamOK.Load(); n != 0 {
					return float64(n) / 1e9
				}
				return 0
			}))
	return m
}

// UpstreamLastOK is when sealpost last reached the provider (a delivery
// or the readiness probe); zero if never since the start.
func (m *Metrics) UpstreamLastOK() time.Time {
	if n := m.upstreamOK.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// UpstreamReached notes a good contact with the provider at t (connected,
// TLS verified, logged in): a delivery, or the readiness probe.
func (m *Metrics) UpstreamReached(t time.Time) { m.upstreamOK.Store(t.UnixNano()) }

func (m *Metrics) registerQueue(q *Queue) {
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
				return max(q.now().Sub(oldest).Seconds(), 0)
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealpost_queue_held_messages",
			Help: "Queued messages whose copies to clients wait for their sender's office hours."},
			func() float64 { return float64(q.heldCount()) }),
	)
}
