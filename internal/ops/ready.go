package ops

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"
)

// How recently the provider must have been reached for /readyz, and when
// a probe is made because deliveries have not reached it for a while.
const (
	providerFresh = 10 * time.Minute
	providerProbe = 2 * time.Minute
	readyCacheFor = 5 * time.Second
)

// Provider is the relay's view of the provider (implemented by
// *relay.Server).
type Provider interface {
	// UpstreamLastOK is when a delivery or probe last reached it.
	UpstreamLastOK() time.Time
	// ProbeUpstream connects and logs in, and sends nothing.
	ProbeUpstream(ctx context.Context) error
}

// Readiness answers /readyz: the spool and the archive take a durable
// write, and the provider was reached recently. Answers are kept a few
// seconds, so that a busy monitor does not probe the provider.
type Readiness struct {
	dirs     []string
	provider Provider
	now      func() time.Time

	notes []func() string

	mu       sync.Mutex
	checked  time.Time
	problems []string
}

// NewReadiness checks that every one of dirs takes a write and that the
// provider is reached.
func NewReadiness(provider Provider, dirs ...string) *Readiness {
	return &Readiness{dirs: dirs, provider: provider, now: time.Now}
}

// Note adds a line /readyz shows without making the relay unready (""
// shows nothing): the off-site copy of the record lagging behind is the
// admin's to know, while the relay still takes mail and keeps it durably.
func (r *Readiness) Note(note func() string) *Readiness {
	r.notes = append(r.notes, note)
	return r
}

// Check returns what keeps the relay from being ready; none when it is.
func (r *Readiness) Check(ctx context.Context) []string {
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
	last := r.provider.UpstreamLastOK()
	if now.Sub(last) > providerProbe {
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := r.provider.ProbeUpstream(pctx)
		cancel()
		if err != nil && now.Sub(last) > providerFresh {
			problems = append(problems, "the provider was not reached in the last "+providerFresh.String()+": "+err.Error())
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

func (r *Readiness) serveHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	defer func() {
		for _, note := range r.notes {
			if n := note(); n != "" {
				fmt.Fprintln(w, "note: "+n)
			}
		}
	}()
	if p := r.Check(req.Context()); len(p) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready:")
		for _, s := range p {
			fmt.Fprintln(w, "- "+s)
		}
		return
	}
	fmt.Fprintln(w, "ready")
}
