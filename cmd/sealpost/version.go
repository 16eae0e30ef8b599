package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/sealpost/sealpost/internal/status"
)

// version and commit are set by the release build (deploy/Makefile:
// -ldflags "-X main.version=... -X main.commit=..."); a plain go build or go
// run takes them from the module and the checkout Go recorded.
var version, commit string

func init() {
	register(&command{name: "version", args: "", summary: "print sealpost's version, the commit it was built from and the Go version", run: runVersion})
}

// buildInfo is what a binary says about itself, for `sealpost version`,
// `sealpost status` and sealpost_build_info.
type buildInfo = status.Build

func currentBuild() buildInfo {
	b := buildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b.OrUnknown()
	}
	if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		b.Version = info.Main.Version
	}
	if b.Commit == "" {
		modified := false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if b.Commit != "" && modified {
			b.Commit += "+changes"
		}
	}
	return b.OrUnknown()
}

func runVersion(ctx context.Context, c *cli, args []string) error {
	if _, err := c.parse(c.flags(), args); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, currentBuild())
	return nil
}
