package queue

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
	"strings"
	"time"

	"github.com/sealpost/sealpost/archive"
)

// The control socket lets `sealpost queue ...` act on the running relay's
// queue (its in-memory schedule must learn of a retry or a drop). It is a unix
// socket in the data dir, mode 0600: whoever may use it may read the spool.

// ServeControl listens on path until ctx ends. extra handlers (reload,
// status) may be added by the caller.
func (q *Queue) ServeControl(ctx context.Context, path string, extra map[string]http.HandlerFunc) error {
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
		writeJSON(w, http.StatusOK, q.List())
	})
	act := func(what string, f func(string) (string, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			id, err := f(r.URL.Query().Get("id"))
			if err != nil {
				code := http.StatusBadRequest
				if errors.Is(err, errNoSuchMessage) {
					code = http.StatusNotFound
				}
				writeJSON(w, code, map[string]string{"error": err.Error()})
				return
			}
			q.noteCommand(r, what, id)
			writeJSON(w, http.StatusOK, map[string]string{"id": id})
		}
	}
	// Profiles for whoever may already read the spool (the socket is 0600).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("POST /queue/retry", act("queue-retry", q.Retry))
	mux.HandleFunc("POST /queue/drop", act("queue-drop", q.Drop))
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

// activityRecorder is the archive's record of changes people make
// (archive.Archive has it); the queue's own Archive need not.
type activityRecorder interface {
	RecordActivity(ctx context.Context, act archive.Activity) error
}

// noteCommand puts a retry or drop a command asked for into the archive's
// chain here, where it was done, so the record does not depend on the
// command living on. The change stands either way; a record that could
// not be written is in the log.
func (q *Queue) noteCommand(r *http.Request, what, id string) {
	rec, ok := q.archive.(activityRecorder)
	if !ok {
		return
	}
	who := r.URL.Query().Get("who")
	if who == "" {
		who = "unknown (a command that did not say who ran it)"
	}
	act := archive.Activity{Who: who, Role: "command", What: what, Object: id, From: "command on the server"}
	if err := rec.RecordActivity(r.Context(), act); err != nil {
		q.log.Error("queue: the change was made, but its activity record could not be written", "what", what, "id", id, "err", err)
	}
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
				return fmt.Errorf("%s: %w", strings.TrimSuffix(e.Error, ": "+errNoSuchMessage.Error()), errNoSuchMessage)
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
func (c *Control) Queue() ([]Message, error) {
	var q []Message
	return q, c.do("GET", "/queue", &q)
}

// Retry makes a message due now; who ran the command goes into the
// activity record the relay writes.
func (c *Control) Retry(id, who string) (string, error) {
	var r struct{ ID string }
	return r.ID, c.do("POST", "/queue/retry?"+url.Values{"id": {id}, "who": {who}}.Encode(), &r)
}

// Drop removes a message from the running relay's queue, recorded as
// Retry is.
func (c *Control) Drop(id, who string) (string, error) {
	var r struct{ ID string }
	return r.ID, c.do("POST", "/queue/drop?"+url.Values{"id": {id}, "who": {who}}.Encode(), &r)
}

// Call calls one of the extra handlers, decoding its JSON answer into out.
func (c *Control) Call(method, path string, out any) error { return c.do(method, path, out) }
