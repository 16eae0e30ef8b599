package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

func init() {
	register(&command{name: "healthcheck", args: "[--ready]",
		summary: "ask the running relay's /healthz (or /readyz) on [metrics] listen; exit 0 when it answers 200 (a container's HEALTHCHECK: the image has no shell)",
		run:     runHealthcheck})
}

func runHealthcheck(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	ready := fs.Bool("ready", false, "ask /readyz: the spool and the archive take a write and the provider was reached")
	_, cfg, err := c.start(fs, args, noArgs)
	if err != nil {
		return err
	}
	if cfg.Metrics.Listen == "" {
		return fmt.Errorf("[metrics] listen is empty in %s: the relay answers /healthz there only", cfg.Path)
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	url := "http://" + loopbackFor(cfg.Metrics.Listen) + path
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the relay does not answer at %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s: %s", url, resp.Status, strings.Join(strings.Fields(string(body)), " "))
	}
	fmt.Fprintf(c.stdout, "%s: %s\n", url, strings.TrimSpace(string(body)))
	return nil
}

// loopbackFor is where this machine reaches a listener bound to addr: an
// unspecified address ("0.0.0.0:9587", ":9587") through loopback.
func loopbackFor(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || (ip != nil && ip.IsUnspecified() && ip.To4() != nil):
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}
