package ops

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options say which listeners to open; an empty address leaves one off.
type Options struct {
	MetricsListen string // /metrics, /healthz, /readyz
	Metrics       prometheus.Gatherer
	Ready         *Readiness

	AutoconfigListen    string // plain HTTP (Thunderbird tries it after HTTPS)
	AutoconfigListenTLS string // HTTPS with TLS (Outlook needs it)
	Autoconfig          http.Handler
	TLS                 *tls.Config // the submission certificate's settings

	Logger *slog.Logger
}

// Servers are the open listeners.
type Servers struct {
	servers []*http.Server
	log     *slog.Logger
}

// Start opens the listeners the options name and serves them until Shutdown.
func Start(o Options) (*Servers, error) {
	s := &Servers{log: o.Logger}
	if o.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Metrics, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintln(w, "ok")
		})
		mux.HandleFunc("GET /readyz", o.Ready.serveHTTP)
		if err := s.serve("metrics", o.MetricsListen, mux, nil); err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
	}
	if o.AutoconfigListen != "" {
		if err := s.serve("autoconfig", o.AutoconfigListen, o.Autoconfig, nil); err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
	}
	if o.AutoconfigListenTLS != "" {
		tc := o.TLS.Clone()
		tc.NextProtos = []string{"http/1.1"}
		if err := s.serve("autoconfig_tls", o.AutoconfigListenTLS, o.Autoconfig, tc); err != nil {
			s.Shutdown(context.Background())
			return nil, err
		}
	}
	return s, nil
}

func (s *Servers) serve(name, listen string, h http.Handler, tc *tls.Config) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("%s: listen on %s: %w", name, listen, err)
	}
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	s.servers = append(s.servers, hs)
	go func() {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("HTTP listener stopped", "listener", name, "err", err)
		}
	}()
	s.log.Info("HTTP listener", "listener", name, "addr", l.Addr().String())
	return nil
}

// Shutdown stops the listeners, letting requests in flight finish until ctx
// ends.
func (s *Servers) Shutdown(ctx context.Context) {
	for _, hs := range s.servers {
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
		}
	}
}
