package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/relay/queue"
)

// A command that changes what sealpost decides or sends (a consent, a
// passphrase, a professional, an absence, a key, a queued message) puts the
// change into the archive's chain as an activity record, as the console
// does with its own: the auditor's Activity page and an export then hold
// both. The running relay alone writes the archive, so the command asks it
// over the control socket; with no relay running the command opens the
// archive itself.

// commandFrom is where a command's change came from, in place of the
// browser's address the console records.
const commandFrom = "command on the server"

// commandChange is one change a command made.
type commandChange struct {
	what      string   // one of the console's activity words
	object    string   // a consent or absence id, a fingerprint
	addresses []string // the clients it concerns
	by        string   // --by, when given
}

// commandWho is who made a change: the person behind the command, who the
// server can vouch for, and the name given with --by when it differs.
func commandWho(by string) string {
	who := invokingUser()
	if by != "" && by != who {
		who += ", as " + by
	}
	return who
}

// serveActivity answers POST /activity?who=&what=&object=&address=... on
// the control socket, which only sealpost's user and root can reach.
func (s *service) serveActivity(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	act := archive.Activity{Who: q.Get("who"), Role: "command", What: q.Get("what"), Object: q.Get("object"), From: commandFrom, Addresses: q["address"]}
	if act.Who == "" || act.What == "" {
		http.Error(w, `{"error":"who and what are needed"}`, http.StatusBadRequest)
		return
	}
	if err := s.pa.arch.RecordActivity(r.Context(), act); err != nil {
		http.Error(w, `{"error":`+quoteJSON(err.Error())+`}`, http.StatusInternalServerError)
		return
	}
	w.Write([]byte("{}"))
}

// noteCommand puts the changes a command made into the archive's chain:
// through the running relay, else into the archive directly (opened once).
// When neither works it says so on stderr; the changes themselves stand
// (the registry, keyring or spool has them, and the registry's history
// records who made them).
func noteCommand(ctx context.Context, cfg *config.Config, stderr io.Writer, changes ...commandChange) {
	if len(changes) == 0 {
		return
	}
	acts := make([]archive.Activity, 0, len(changes))
	for _, ch := range changes {
		acts = append(acts, archive.Activity{Who: commandWho(ch.by), Role: "command", What: ch.what, Object: ch.object, From: commandFrom, Addresses: ch.addresses})
	}
	ctl, err := queue.DialControl(cfg.ControlPath())
	if err == nil {
		for _, act := range acts {
			v := url.Values{"who": {act.Who}, "what": {act.What}, "object": {act.Object}, "address": act.Addresses}
			if err = ctl.Call(http.MethodPost, "/activity?"+v.Encode(), nil); err != nil {
				break
			}
		}
	} else if errors.Is(err, queue.ErrNotRunning) {
		err = recordActivityOffline(ctx, cfg, stderr, acts)
	}
	if err != nil {
		fmt.Fprintf(stderr, "note: this change is not in the activity log (%v)\n", err)
	}
}

// recordActivityOffline writes activity records while no relay runs.
func recordActivityOffline(ctx context.Context, cfg *config.Config, stderr io.Writer, acts []archive.Activity) error {
	// Warnings only: a first index build's progress is not the command's news.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, _, err := openArchive(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("no relay is running and the archive could not be opened: %w", err)
	}
	defer a.Close()
	for _, act := range acts {
		if err := a.RecordActivity(ctx, act); err != nil {
			return err
		}
	}
	return nil
}
