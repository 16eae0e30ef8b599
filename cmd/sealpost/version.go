package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
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
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

func currentBuild() buildInfo {
	b := buildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b.orUnknown()
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
	return b.orUnknown()
}

func (b buildInfo) orUnknown() buildInfo {
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

func (b buildInfo) String() string {
	return fmt.Sprintf("sealpost %s (commit %s, %s)", b.Version, b.Commit, b.GoVersion)
}

func runVersion(ctx context.Context, c *cli, args []string) error {
	if _, err := c.parse(c.flags(), args); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, currentBuild())
	return nil
}
