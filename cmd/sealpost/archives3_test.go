package main

import (
	"testing"
	"time"

	"github.com/sealpost/sealpost/internal/config"
)

// TestOffsiteWiring: with [archive.s3] segments are sealed hourly and prune
// asks the state file; without it the archive's defaults stand; --s3 is
// found wherever it is among a command's flags.
func TestOffsiteWiring(t *testing.T) {
	with := &config.Config{DataDir: t.TempDir(), Archive: config.ArchiveConfig{S3: &config.ArchiveS3Config{}}}
	without := &config.Config{DataDir: t.TempDir()}
	if got := offsiteSealEvery(with); got != time.Hour {
		t.Errorf("seal every %s with S3", got)
	}
	if got := offsiteSealEvery(without); got != 0 {
		t.Errorf("seal every %s without S3", got)
	}
	if offsiteMayRemove(without) != nil {
		t.Error("a prune hook without S3")
	}
	if why := offsiteMayRemove(with)("seg-00000001.log"); why == "" {
		t.Error("prune may remove a segment nothing says is uploaded")
	}
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{[]string{"--s3"}, true},
		{[]string{"-c", "auditor.toml", "--s3", "--node", "a"}, true},
		{[]string{"-s3=true"}, true},
		{[]string{"--archive", "copy"}, false},
		{[]string{"--s3=false"}, false},
	} {
		if got := wantsS3(tt.args); got != tt.want {
			t.Errorf("wantsS3(%q) = %v", tt.args, got)
		}
	}
}
