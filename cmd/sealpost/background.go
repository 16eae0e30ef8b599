package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/internal/status"
)

// What the relay does by itself beside serving: it verifies the archive
// once a day, so that damage shows within a day (in the log, in /metrics and
// in `sealpost status`) rather than at the next audit; and it renews its own
// certificate when it holds the local CA itself (no tls_cert configured).
// Verifying reads the whole archive (about 540 MB a second) while the relay
// writes it, as `sealpost archive verify` does.
const (
	verifyEvery = 24 * time.Hour
	renewEvery  = 24 * time.Hour
)

// archiveCheckFile, in data_dir, keeps the relay's last verification, for
// `sealpost status` while the relay is stopped.
const archiveCheckFile = "archive-verified.json"

// archiveCheck is one verification of the archive by the relay.
type archiveCheck = status.ArchiveCheck

// background runs the periodic jobs until stop.
type background struct {
	verified atomic.Pointer[archiveCheck]
	stop     context.CancelFunc
}

func startBackground(cfg *config.Config, arch *archive.Archive, log *slog.Logger) *background {
	ctx, stop := context.WithCancel(context.Background())
	b := &background{stop: stop}
	if c, err := readArchiveCheck(cfg.DataDir); err == nil {
		b.verified.Store(c)
	}
	if arch != nil {
		go every(ctx, verifyEvery, func() { b.verify(cfg.DataDir, arch.Dir(), log) })
	}
	if cfg.SMTP.TLSCert == "" {
		go every(ctx, renewEvery, func() {
			if _, err := renewLocal(cfg, cfg.TLSDir(), log); err != nil {
				log.Error("the certificate could not be renewed", "err", err)
			}
		})
	}
	return b
}

// every runs f now and then every d, until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (b *background) verify(dataDir, archiveDir string, log *slog.Logger) {
	c := verifyArchive(archiveDir, time.Now())
	b.verified.Store(c)
	if c.OK {
		log.Info("archive verified", "records", c.Records, "head_seq", c.HeadSeq, "seconds", c.Seconds)
	} else {
		log.Error("THE ARCHIVE FAILED VERIFICATION: run sealpost archive verify for the details, and keep a copy of the archive as it is", "problems", c.Problems)
	}
	if err := writeArchiveCheck(dataDir, c); err != nil {
		log.Warn("cannot keep the archive's verification for sealpost status", "err", err)
	}
}

func verifyArchive(dir string, now time.Time) *archiveCheck {
	rep, err := archive.VerifyWith(dir, io.Discard, archive.VerifyOptions{})
	c := &archiveCheck{Time: now, Seconds: time.Since(now).Seconds()}
	if rep != nil {
		c.Records, c.HeadSeq, c.Head = rep.Records, rep.HeadSeq, rep.Head
		c.Problems = rep.Problems
	}
	if err != nil && len(c.Problems) == 0 {
		c.Problems = []string{err.Error()}
	}
	c.Problems = c.Problems[:min(len(c.Problems), 5)]
	c.OK = err == nil && len(c.Problems) == 0
	return c
}

func writeArchiveCheck(dataDir string, c *archiveCheck) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dataDir, archiveCheckFile), append(b, '\n'), 0o600)
}

func readArchiveCheck(dataDir string) (*archiveCheck, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, archiveCheckFile))
	if err != nil {
		return nil, err
	}
	var c archiveCheck
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	if c.Time.IsZero() {
		return nil, errors.New("no time in " + archiveCheckFile)
	}
	return &c, nil
}
