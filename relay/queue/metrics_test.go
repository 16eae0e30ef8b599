package queue

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestProviderLastSuccessGauge: 0 until the provider is reached, then the
// time of the last contact, for an alert on "not reached for an hour".
func TestProviderLastSuccessGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	gauge := func() float64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "sealpost_provider_last_success_timestamp_seconds" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no sealpost_provider_last_success_timestamp_seconds")
		return 0
	}
	if v := gauge(); v != 0 {
		t.Errorf("before any contact: %v", v)
	}
	at := time.Date(2026, 12, 6, 12, 0, 0, 500_000_000, time.UTC)
	m.UpstreamReached(at)
	if v := gauge(); v != 1796558400.5 {
		t.Errorf("after a contact at %v: %v", at, v)
	}
}
