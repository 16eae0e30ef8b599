package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sealpost/sealpost/archive"
)

// The control socket lets `sealpost queue ...` act on the running relay's
// queue (its in-memory schedule must learn of a retry or a drop). It is a unix
// socket in the data dir, mode 0600: whoever may use it may read the spool.

// ServeControl listens on path until ctx ends. extra handlers (reload,
// status) may be added by the caller.
func (s *Server) ServeControl(ctx context.Context, path string, extra map[string]http.HandlerFunc) error {
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /queue", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Queue())
	})
	act := func(f func(string) (string, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			id, err := f(r.URL.Query().Get("id"))
			if err != nil {
				code := http.StatusBadRequest
				if errors.Is(err, ErrNoSuchMessage) {
					code = http.StatusNotFound
				}
				writeJSON(w, code, map[string]string{"error": err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"id": id})
		}
	}
	// Profiles for whoever may already read the spool (the socket is 0600).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("POST /queue/retry", act(s.Retry))
	mux.HandleFunc("POST /queue/drop", act(s.Drop))
	for pattern, h := range extra {
		mux.HandleFunc(pattern, h)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		hs.Close()
		os.Remove(path)
	}()
	go hs.Serve(l)
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// ErrNotRunning says no relay answers on the control socket.
var ErrNotRunning = errors.New("sealpost serve is not running")

// Control is a client of a running relay's control socket.
type Control struct{ c *http.Client }

// DialControl returns a client for the socket at path, or ErrNotRunning.
func DialControl(path string) (*Control, error) {
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, ErrNotRunning
	}
	conn.Close()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	return &Control{c: c}, nil
}

func (c *Control) do(method, path string, out any) error {
	req, err := http.NewRequest(method, "http://sealpost"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.c.Do(req)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusNotFound {
				return fmt.Errorf("%s: %w", strings.TrimSuffix(e.Error, ": "+ErrNoSuchMessage.Error()), ErrNoSuchMessage)
			}
			return errors.New(e.Error)
		}
		return fmt.Errorf("control socket: %s", resp.Status)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Queue lists the running relay's queue.
func (c *Control) Queue() ([]QueuedMessage, error) {
	var q []QueuedMessage
	return q, c.do("GET", "/queue", &q)
}

// Retry makes a message due now.
func (c *Control) Retry(id string) (string, error) {
	var r struct{ ID string }
	return r.ID, c.do("POST", "/queue/retry?id="+url.QueryEscape(id), &r)
}

// Drop removes a message from the running relay's queue.
func (c *Control) Drop(id string) (string, error) {
	var r struct{ ID string }
	return r.ID, c.do("POST", "/queue/drop?id="+url.QueryEscape(id), &r)
}

// Call calls one of the extra handlers, decoding its JSON answer into out.
func (c *Control) Call(method, path string, out any) error { return c.do(method, path, out) }

// OfflineQueue works on the spool of a relay that is not running. It holds
// the spool's lock, so a relay cannot start meanwhile.
type OfflineQueue struct {
	s       *spool
	entries []*entry
}

// OpenOfflineQueue locks the spool at dir; it fails if a relay is running.
func OpenOfflineQueue(dir string) (*OfflineQueue, error) {
	if _, err := os.Stat(filepath.Join(dir, queueDir)); errors.Is(err, os.ErrNotExist) {
		return &OfflineQueue{}, nil // nothing was ever queued
	}
	s, _, err := openSpool(dir)
	if err != nil {
		return nil, err
	}
	entries, _, errs := s.loadQueue()
	if len(errs) > 0 {
		s.close()
		return nil, errors.Join(errs...)
	}
	return &OfflineQueue{s: s, entries: entries}, nil
}

func (o *OfflineQueue) Close() error {
	if o.s == nil {
		return nil
	}
	return o.s.close()
}

func (o *OfflineQueue) List() []QueuedMessage {
	out := make([]QueuedMessage, 0, len(o.entries))
	for _, e := range o.entries {
		out = append(out, describeEntry(e))
	}
	return out
}

func (o *OfflineQueue) find(prefix string) (*entry, error) {
	var found *entry
	for _, e := range o.entries {
		if strings.HasPrefix(e.meta.ID, prefix) {
			if found != nil {
				return nil, fmt.Errorf("%q matches several messages; give more of the id", prefix)
			}
			found = e
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s: %w", prefix, ErrNoSuchMessage)
	}
	return found, nil
}

// Retry makes a message due at the next start.
func (o *OfflineQueue) Retry(prefix string) (string, error) {
	e, err := o.find(prefix)
	if err != nil {
		return "", err
	}
	e.state.NextAttempt = time.Now()
	return e.meta.ID, e.saveState()
}

// Drop removes a message for good. record gets, first, the outcomes the
// archive lacks and the drop (naming the recipients who never got it): the
// message leaves the spool only once they are recorded, so the clinical
// record never loses that a client got it, or that it was dropped.
func (o *OfflineQueue) Drop(prefix string, record func([]archive.Event) error) (string, error) {
	e, err := o.find(prefix)
	if err != nil {
		return "", err
	}
	e.markDropped(time.Now())
	if err := record(e.state.Unrecorded); err != nil {
		return e.meta.ID, fmt.Errorf("not dropped: the archive cannot record it: %w", err)
	}
	if err := e.remove(); err != nil { // fsyncs the folder
		return "", err
	}
	return e.meta.ID, nil
}
