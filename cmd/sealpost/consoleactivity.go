package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/relay/queue"
)

// A command that changes what sealpost decides with (a key imported,
// accepted or removed) asks the running relay, which alone writes the
// archive, to put the change into the chain, as the console does with its
// own: the activity log then holds both.

// serveActivity answers POST /activity?who=&what=&object= on the control
// socket, which only sealpost's user and root can reach.
func (s *service) serveActivity(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	act := archive.Activity{Who: q.Get("who"), Role: "command", What: q.Get("what"), Object: q.Get("object"), From: "command on the server"}
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

// noteCommand puts a change a command made into the archive's chain
// through the running relay; without one it says on stderr that the
// change is not in the activity log (the keyring has it either way).
func noteCommand(cfg *config.Config, stderr io.Writer, what, object string) {
	v := url.Values{"who": {recorder("")}, "what": {what}, "object": {object}}
	ctl, err := queue.DialControl(cfg.ControlPath())
	if err == nil {
		err = ctl.Call(http.MethodPost, "/activity?"+v.Encode(), nil)
	}
	if err != nil {
		fmt.Fprintf(stderr, "note: the relay is not running (or did not answer: %v), so this change is not in the console's activity log\n", err)
	}
}
