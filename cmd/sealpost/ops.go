package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/addr"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/relay"
	"github.com/sealpost/sealpost/relay/submission"
)

// upstreamFresh is how recently the provider must have been reached for
// /readyz; the probe runs when deliveries have not reached it for a while.
const (
	upstreamFresh = 10 * time.Minute
	upstreamProbe = 2 * time.Minute
	readyCacheFor = 5 * time.Second
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

// readiness answers /readyz: the spool and the archive take a durable write,
// and the provider was reached recently.
type readiness struct {
	dirs     []string
	srv      *relay.Server
	now      func() time.Time
	mu       sync.Mutex
	checked  time.Time
	problems []string
}

func (r *readiness) check(ctx context.Context) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.checked) < readyCacheFor {
		return r.problems
	}
	var problems []string
	for _, d := range r.dirs {
		if err := probeWrite(d); err != nil {
			problems = append(problems, fmt.Sprintf("%s is not writable: %v", d, err))
		}
	}
	last := r.srv.UpstreamLastOK()
	if now.Sub(last) > upstreamProbe {
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := r.srv.ProbeUpstream(pctx)
		cancel()
		if err != nil && now.Sub(last) > upstreamFresh {
			problems = append(problems, "the provider was not reached in the last "+upstreamFresh.String()+": "+err.Error())
		}
	}
	r.checked, r.problems = now, problems
	return problems
}

// probeWrite writes, syncs and removes a small file: what the spool and the
// archive do for every message.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".ready-probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	defer os.Remove(name)
	if _, err := f.Write([]byte("ok\n")); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (r *readiness) serveHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if p := r.check(req.Context()); len(p) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready:")
		for _, s := range p {
			fmt.Fprintln(w, "- "+s)
		}
		return
	}
	fmt.Fprintln(w, "ready")
}

// opsServers are the HTTP listeners beside SMTP: metrics and health for the
// operator, settings for mail clients.
type opsServers struct {
	servers []*http.Server
	Addrs   map[string]net.Addr
}

func startOps(cfg *config.Config, clients *atomic.Pointer[submission.ClientSettings], srv *relay.Server, reg *prometheus.Registry, arch *archive.Archive, serverTLS *tls.Config, log *slog.Logger) (*opsServers, error) {
	ops := &opsServers{Addrs: map[string]net.Addr{}}
	serve := func(name, listen string, h http.Handler, tc *tls.Config) error {
		l, err := net.Listen("tcp", listen)
		if err != nil {
			return fmt.Errorf("%s: listen on %s: %w", name, listen, err)
		}
		if tc != nil {
			l = tls.NewListener(l, tc)
		}
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
		ops.servers = append(ops.servers, hs)
		ops.Addrs[name] = l.Addr()
		go func() {
			if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("HTTP listener stopped", "listener", name, "err", err)
			}
		}()
		log.Info("HTTP listener", "listener", name, "addr", l.Addr().String())
		return nil
	}
	if cfg.Metrics.Listen != "" {
		dirs := []string{cfg.SpoolDir()}
		if arch != nil {
			dirs = append(dirs, arch.Dir())
		}
		ready := &readiness{dirs: dirs, srv: srv, now: time.Now}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "ok")
		})
		mux.HandleFunc("GET /readyz", ready.serveHTTP)
		if err := serve("metrics", cfg.Metrics.Listen, mux, nil); err != nil {
			ops.shutdown(context.Background())
			return nil, err
		}
	}
	if cfg.Clients.Listen != "" || cfg.Clients.ListenTLS != "" {
		h := submission.AutoconfigHandler(clients.Load)
		if cfg.Clients.Listen != "" {
			if err := serve("autoconfig", cfg.Clients.Listen, h, nil); err != nil {
				ops.shutdown(context.Background())
				return nil, err
			}
		}
		if cfg.Clients.ListenTLS != "" {
			tc := serverTLS.Clone()
			tc.NextProtos = []string{"http/1.1"}
			if err := serve("autoconfig_tls", cfg.Clients.ListenTLS, h, tc); err != nil {
				ops.shutdown(context.Background())
				return nil, err
			}
		}
	}
	return ops, nil
}

func (o *opsServers) shutdown(ctx context.Context) {
	for _, s := range o.servers {
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
		}
	}
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
