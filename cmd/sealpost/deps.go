package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/sealpost/sealpost/relay"
	"github.com/sealpost/sealpost/rules"
	"github.com/sealpost/sealpost/rules/addr"
)

// serveDeps are the policy and the archive the relay is wired to.
type serveDeps struct {
	policy  relay.Policy
	archive relay.Recorder
	closers []func() error
	reload  func(cfg *Config) error
}

func (d *serveDeps) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// openPolicyAndArchive wires the rules and the archive.
// TODO(integration): replace the placeholder with rules.Policy and archive.Archive.
func openPolicyAndArchive(ctx context.Context, cfg *Config, log *slog.Logger) (*serveDeps, error) {
	d := &serveDeps{policy: placeholderPolicy{}}
	d.reload = func(*Config) error { return nil }
	return d, nil
}

type placeholderPolicy struct{}

func (placeholderPolicy) Decide(ctx context.Context, account, rcpt string) (rules.Decision, error) {
	n, err := addr.Normalize(rcpt)
	if err != nil {
		return rules.Decision{}, err
	}
	return rules.Decision{Address: n, Protection: rules.Internal}, nil
}

func (placeholderPolicy) Apply(ctx context.Context, sub rules.Submission, msg io.Reader, out rules.Sink) (*rules.Result, error) {
	w, err := out.Create("sent")
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, msg); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	c := rules.Copy{Name: "sent", Protection: rules.Internal}
	for _, d := range sub.Decisions {
		c.Recipients = append(c.Recipients, d.Recipient)
	}
	return &rules.Result{Plain: "sent", Copies: []rules.Copy{c}, Decisions: sub.Decisions}, nil
}
