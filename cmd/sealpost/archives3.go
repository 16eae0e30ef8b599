package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/archive/offsite"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/status"
)

func init() {
	register(&command{name: "archive restore", args: "--s3 --to DIR [--node NAME]",
		summary: "download a node's archive from the S3 bucket ([archive.s3]) into DIR/archive and DIR/archive-head, then verify it", run: runArchiveRestore})
}

// testSegmentBytes closes segments this small (0: the archive's default);
// only builds for the e2e tests set it (segments_testclock.go).
var testSegmentBytes int64

// offsiteClient reaches the bucket [archive.s3] names, with the keys read
// from their files; retries is how often one request is tried again.
func offsiteClient(s *config.ArchiveS3Config, retries int) (*offsite.Client, error) {
	access, secret, err := s.S3Keys()
	if err != nil {
		return nil, err
	}
	return offsite.New(offsite.Config{Endpoint: s.Endpoint, Bucket: s.Bucket, Region: s.Region, Prefix: s.Prefix,
		AccessKey: access, SecretKey: secret, CAFile: s.CAFile, Retries: retries})
}

// offsiteMayRemove is prune's hook with [archive.s3]: only segments the
// state file says are in the bucket go.
func offsiteMayRemove(cfg *config.Config) func(string) string {
	if !cfg.Offsite() {
		return nil
	}
	return offsite.MayRemove(filepath.Join(cfg.DataDir, offsite.StateFile))
}

// offsiteSealEvery is how soon a segment is sealed with [archive.s3]: an
// hour, rather than the archive's day. Every tail object holds the unsealed
// segment whole and stays locked for the retention, so the seal bounds what
// they cost: an hour's records in at most twelve snapshots (tail_interval
// 5m), where a day's would be uploaded again up to 288 times. 0 without S3
// (the archive's default).
func offsiteSealEvery(cfg *config.Config) time.Duration {
	if !cfg.Offsite() {
		return 0
	}
	return time.Hour
}

// offsiteRunner is the uploader's goroutine beside the relay.
type offsiteRunner struct {
	up     *offsite.Uploader
	tail   time.Duration
	cancel context.CancelFunc
	done   chan struct{}
}

// startOffsite starts uploading the archive when [archive.s3] is set (nil
// otherwise). It connects to nothing before it runs: S3 down at the start
// is S3 down, not a relay that does not start.
func startOffsite(cfg *config.Config, arch *archive.Archive, log *slog.Logger) (*offsiteRunner, error) {
	if !cfg.Offsite() || arch == nil {
		return nil, nil
	}
	client, err := offsiteClient(cfg.Archive.S3, 0)
	if err != nil {
		return nil, err
	}
	r := &offsiteRunner{tail: cfg.Archive.S3.TailInterval.D(), done: make(chan struct{})}
	r.up = offsite.NewUploader(offsite.Options{Client: client, Node: cfg.NodeName(), ArchiveDir: arch.Dir(),
		HeadFile: archive.HeadFile(arch.Dir()), StateFile: filepath.Join(cfg.DataDir, offsite.StateFile),
		Retention: cfg.Archive.Retention.D(), TailInterval: r.tail, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.up.Run(ctx)
	}()
	log.Info("copying the record to S3", "where", client.Where(), "node", cfg.NodeName(), "tail_interval", r.tail)
	return r, nil
}

// stop ends the uploads, waiting a second at most: an upload cut off is
// done again by the next start.
func (r *offsiteRunner) stop() {
	if r == nil {
		return
	}
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(time.Second):
	}
}

// state is what `sealpost status` shows of the off-site copy.
func (r *offsiteRunner) state() *status.Offsite {
	if r == nil {
		return nil
	}
	s := r.up.Status()
	return &status.Offsite{Where: s.Where, LagSeconds: s.Lag.Seconds(), Pending: s.Pending, SyncedAt: s.SyncedAt,
		LastError: s.LastError, Unreachable: s.Unreachable, TailSeconds: r.tail.Seconds()}
}

// readyNote is /readyz's line about the off-site copy when it is behind.
func (r *offsiteRunner) readyNote() string {
	if st := r.state(); st != nil {
		return st.Warning()
	}
	return ""
}

// registerOffsiteMetrics adds the upload's lag and backlog to /metrics.
func registerOffsiteMetrics(reg *prometheus.Registry, r *offsiteRunner) {
	if r == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealpost_archive_upload_lag_seconds",
			Help: "How far behind the archive's off-site copy in S3 is: seconds since nothing waited to be uploaded (0: up to date; up to tail_interval is the design)."},
			func() float64 { return r.up.Status().Lag.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealpost_archive_upload_pending_objects",
			Help: "Objects waiting to be uploaded to the archive's off-site copy in S3 (sealed segments, the tail, the head file)."},
			func() float64 { return float64(r.up.Status().Pending) }))
}

// bucketAccess reads [archive.s3] from the configuration, which may hold
// nothing else (an auditor's, with read-only keys).
func bucketAccess(c *cli) (*config.BucketAccess, *offsite.Client, error) {
	b, err := config.LoadBucketAccess(c.configPath)
	if err != nil {
		return nil, nil, err
	}
	client, err := offsiteClient(&b.S3, 3)
	if err != nil {
		return nil, nil, err
	}
	return b, client, nil
}

func runArchiveRestore(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	s3 := fs.Bool("s3", false, "from the S3 bucket [archive.s3] names (required: the only source there is)")
	to := fs.String("to", "", "a new folder: the archive goes into DIR/archive, its head file into DIR/archive-head (required)")
	node := fs.String("node", "", "the node whose archive to restore (default: archive.node of the configuration, or main)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || !*s3 || *to == "" {
		return usagef("needs --s3 and --to DIR")
	}
	b, client, err := bucketAccess(c)
	if err != nil {
		return err
	}
	if *node == "" {
		*node = b.Node
	}
	rep, err := offsite.Restore(ctx, client, *node, *to)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Restored node %s from %s into %s: %d sealed segment(s), %s.\n", *node, client.Where(), *to, rep.Segments, restoredTail(rep))
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(c.stderr, "%d object(s) below node %s name nothing an archive holds and were not restored (someone with write access to the bucket put them there): %s\n",
			len(rep.Skipped), *node, strings.Join(rep.Skipped, ", "))
	}
	dir := filepath.Join(*to, "archive")
	if err := verifyRestored(c.stdout, dir); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "seal.key")); err == nil {
		fmt.Fprintf(c.stdout, "To serve from it again: stop the relay, move %s and %s into its data_dir (archive-index.db is built again at the start).\n", dir, archive.HeadFile(dir))
	}
	return nil
}

// restoredTail says what of the segment being written came back, and what
// may be lost: the records after its newest snapshot.
func restoredTail(rep *offsite.RestoreReport) string {
	if rep.Tail == "" {
		return "no unsealed segment (nothing was written after the last seal, or it was never uploaded)"
	}
	return fmt.Sprintf("and %s as it was at %s (records written after that were not copied yet: at most tail_interval's worth)",
		rep.Tail, rep.TailTime.Local().Format("2006-01-02 15:04:05"))
}

// verifyRestored verifies a restored archive against its restored head file.
func verifyRestored(w io.Writer, dir string) error {
	vr, err := archive.VerifyWith(dir, w, archive.VerifyOptions{})
	if err != nil {
		return fmt.Errorf("the restored archive does not verify: %w", err)
	}
	if !vr.EndChecked {
		return fmt.Errorf("the restored archive verifies as far as it goes (%d records), but the bucket holds no head file to check its end against", vr.Records)
	}
	fmt.Fprintf(w, "The restored archive verifies: %d records, chain head %d:%s.\n", vr.Records, vr.HeadSeq, vr.Head)
	return nil
}

// verifyFromBucket is `archive verify --s3`: each node's chain (or the one
// named) is downloaded whole into a temporary folder and the chains
// verified as those of several nodes are (verifyChains), then removed.
func verifyFromBucket(ctx context.Context, c *cli, node string) error {
	_, client, err := bucketAccess(c)
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "sealpost-verify-s3-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	chains, err := downloadChains(ctx, c.stdout, client, node, root)
	if err != nil {
		return err
	}
	return verifyChains(c, chains, nil, archive.VerifyOptions{})
}

// wantsS3 says whether a reading command was asked for the bucket's copy.
func wantsS3(args []string) bool {
	for _, a := range args {
		if a == "--s3" || a == "-s3" || a == "--s3=true" || a == "-s3=true" {
			return true
		}
	}
	return false
}

// runArchiveVerifyS3 is `archive verify --s3 [--node NAME]`.
func runArchiveVerifyS3(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	fs.Bool("s3", false, "verify the copy in the S3 bucket [archive.s3] names: each node's whole chain is downloaded into a temporary folder, verified, and removed (-c names a configuration with [archive.s3]; an auditor's may hold nothing else)")
	node := fs.String("node", "", "only this node's chain (default: every node in the bucket)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("takes no arguments")
	}
	return verifyFromBucket(ctx, c, *node)
}

// checkOffsite is what `sealpost check` says of [archive.s3]: the key
// files, plain HTTP named as such, and (unless offline) whether the bucket
// has Object Lock on.
func checkOffsite(ctx context.Context, cfg *config.Config, offline bool) []checkResult {
	s := cfg.Archive.S3
	if s == nil {
		return nil
	}
	var out []checkResult
	client, err := offsiteClient(s, 1)
	if err != nil {
		return []checkResult{{what: "[archive.s3] (line " + fmt.Sprint(cfg.Line("archive.s3")) + ")", err: err}}
	}
	if s.Plaintext() {
		out = append(out, checkResult{what: "archive.s3.endpoint " + s.Endpoint + " (line " + fmt.Sprint(cfg.Line("archive.s3.endpoint")) + ")",
			err: fmt.Errorf("plain HTTP: the record's segments and the keys go to it unencrypted (allowed to 127.0.0.1 only, e.g. a test server or a local TLS tunnel)"), warn: true})
	}
	what := fmt.Sprintf("the off-site copy of node %s's record in %s has Object Lock on", cfg.NodeName(), client.Where())
	if offline {
		return append(out, checkResult{what: what + " (not asked: --offline)"})
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return append(out, checkResult{what: what, err: client.CheckLock(lctx)})
}
