package main

import (
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/ops"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"github.com/sealpost/sealpost/relay"
	"github.com/sealpost/sealpost/relay/submission"
)

// newMetricsRegistry holds the relay's counters, the archive's size and the
// Go runtime's own metrics.
func newMetricsRegistry(arch *archive.Archive) (*prometheus.Registry, *relay.Metrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := relay.NewMetrics(reg)
	if arch != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealpost_archive_bytes",
			Help: "Bytes of the clinical-record archive's segments on disk."},
			func() float64 { n, _ := arch.Size(); return float64(n) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealpost_archive_records",
			Help: "Records in the archive's hash chain."},
			func() float64 { n, _ := arch.ChainHead(); return float64(n) }))
	}
	return reg, m
}

// registerServiceMetrics adds what the relay itself knows: the build, the
// certificates' ends (sealpost_certificate_expiry_timestamp_seconds), the
// archive's last verification.
func registerServiceMetrics(reg *prometheus.Registry, cfg *config.Config, bg *background) {
	b := currentBuild()
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sealpost_build_info",
		Help: "Always 1; the labels say which sealpost runs (sealpost version)."}, []string{"version", "commit", "goversion"})
	info.WithLabelValues(b.Version, b.Commit, b.GoVersion).Set(1)
	reg.MustRegister(info, &certificateCollector{cfg: cfg},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealpost_archive_verified_timestamp_seconds",
			Help: "When the relay last verified the whole archive (once a day), as a Unix time; 0 if never."},
			func() float64 {
				if c := bg.verified.Load(); c != nil {
					return float64(c.Time.Unix())
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealpost_archive_verify_problems",
			Help: "Problems the relay's last verification of the archive found (0: all well)."},
			func() float64 {
				if c := bg.verified.Load(); c != nil && !c.OK {
					return float64(max(len(c.Problems), 1))
				}
				return 0
			}))
}

// certificateCollector reports when each certificate mail clients rely on
// ends, read from its file at every scrape (a renewal shows at once):
// certificate="server", and for sealpost's own CA "local_ca" and, while one
// waits to take over, "local_ca_next".
type certificateCollector struct{ cfg *config.Config }

var certificateExpiry = prometheus.NewDesc("sealpost_certificate_expiry_timestamp_seconds",
	"When the certificate ends, as a Unix time.", []string{"certificate", "path"}, nil)

func (c *certificateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certificateExpiry }

func (c *certificateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, cert := range certificatesInUse(c.cfg) {
		if t, err := tlsconf.CertificateExpiry(cert.path); err == nil {
			ch <- prometheus.MustNewConstMetric(certificateExpiry, prometheus.GaugeValue, float64(t.Unix()), cert.label, cert.path)
		}
	}
}

// certificateInUse is a certificate file and what it is.
type certificateInUse struct{ label, what, path string }

// certificatesInUse are the server's certificate and, for sealpost's own
// CA, the CA's (and its successor's while one waits).
func certificatesInUse(cfg *config.Config) []certificateInUse {
	server := cfg.SMTP.TLSCert
	if server == "" {
		server = filepath.Join(cfg.TLSDir(), tlsconf.CertFile)
	}
	out := []certificateInUse{{"server", "certificate", server}}
	if dir, ok := localCA(cfg); ok {
		out = append(out, certificateInUse{"local_ca", "local CA", filepath.Join(dir, tlsconf.CAFile)})
		if next := filepath.Join(dir, tlsconf.NextCAFile); fileExists(next) {
			out = append(out, certificateInUse{"local_ca_next", "next local CA", next})
		}
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// startOps opens the HTTP listeners beside SMTP: metrics and health for the
// operator (ready when the spool and the archive take a write and the
// provider was reached), settings for mail clients.
func startOps(cfg *config.Config, clients *atomic.Pointer[submission.ClientSettings], srv *relay.Server, reg *prometheus.Registry,
	arch *archive.Archive, serverTLS *tls.Config, log *slog.Logger, notes ...func() string) (*ops.Servers, error) {
	dirs := []string{cfg.SpoolDir()}
	if arch != nil {
		dirs = append(dirs, arch.Dir())
	}
	ready := ops.NewReadiness(srv, dirs...)
	for _, n := range notes {
		ready.Note(n)
	}
	return ops.Start(ops.Options{
		MetricsListen: cfg.Metrics.Listen, Metrics: reg, Ready: ready,
		AutoconfigListen: cfg.Clients.Listen, AutoconfigListenTLS: cfg.Clients.ListenTLS,
		Autoconfig: submission.AutoconfigHandler(clients.Load), TLS: serverTLS, Logger: log,
	})
}

// clientSettings derives what mail clients are told from the configuration:
// sealpost's name and ports, the practice's domains, the provider's IMAP.
func clientSettings(cfg *config.Config) submission.ClientSettings {
	cs := submission.ClientSettings{Hostname: cfg.SMTP.Hostname, DisplayName: cfg.Clients.DisplayName, IMAPTLS: cfg.Clients.IMAPTLS}
	port := func(hostport string) int {
		_, p, err := net.SplitHostPort(hostport)
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(p)
		return n
	}
	cs.SubmissionPort = port(cfg.SMTP.Submission)
	cs.SubmissionsPort = port(cfg.SMTP.Submissions)
	if cfg.Clients.IMAP != "" {
		h, _, _ := net.SplitHostPort(cfg.Clients.IMAP)
		cs.IMAPHost, cs.IMAPPort = h, port(cfg.Clients.IMAP)
	}
	users := map[string]string{}
	seen := map[string]bool{}
	for _, a := range cfg.Accounts {
		for _, s := range a.Addresses {
			n, err := addr.Normalize(s)
			if err != nil {
				continue
			}
			users[n] = a.Username
			if i := strings.LastIndexByte(n, '@'); i >= 0 && !seen[n[i+1:]] {
				seen[n[i+1:]] = true
				cs.Domains = append(cs.Domains, n[i+1:])
			}
		}
	}
	cs.Username = func(address string) string {
		n, err := addr.Normalize(address)
		if err != nil {
			return ""
		}
		return users[n]
	}
	return cs
}
