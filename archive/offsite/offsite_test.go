package offsite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/testutil"
	"github.com/sealpost/sealpost/record"
)

const retention = 7 * 365 * 24 * time.Hour

// node is one relay's data_dir with its archive open, and an uploader of
// it into a bucket of a private versitygw.
type node struct {
	dataDir string
	arch    *archive.Archive
	s3      *testutil.S3Server
	client  *Client
	up      *Uploader
	n       int
}

func newNode(t *testing.T, s3 *testutil.S3Server, bucket string) *node {
	t.Helper()
	n := &node{dataDir: t.TempDir(), s3: s3}
	pub, _, err := archive.EnsureKey(n.dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	n.arch, err = archive.Open(archive.Options{Dir: filepath.Join(n.dataDir, "archive"), PublicKey: pub,
		MayRemove: MayRemove(filepath.Join(n.dataDir, StateFile))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.arch.Close() })
	n.client, err = New(Config{Endpoint: s3.Endpoint, Bucket: bucket, Region: "us-east-1", AccessKey: s3.AccessKey, SecretKey: s3.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	n.up = n.uploader()
	return n
}

func (n *node) uploader() *Uploader {
	return NewUploader(Options{Client: n.client, Node: "a", ArchiveDir: filepath.Join(n.dataDir, "archive"),
		HeadFile: filepath.Join(n.dataDir, "archive-head"), StateFile: filepath.Join(n.dataDir, StateFile),
		Retention: retention, TailInterval: time.Minute, Logger: slog.New(slog.DiscardHandler)})
}

// send records messages; with seal, the segment is sealed after them.
func (n *node) send(t *testing.T, count int, seal bool) {
	t.Helper()
	ctx := context.Background()
	for range count {
		n.n++
		id := fmt.Sprintf("msg%04d", n.n)
		client := "anna@client.example"
		body := fmt.Sprintf("From: <therapist@practice.example>\r\nTo: %s\r\nSubject: Session %d\r\nMessage-ID: <%s@practice.example>\r\n\r\nNotes %d.\r\n", client, n.n, id, n.n)
		m := archive.Message{ID: id, Time: time.Now(), Direction: archive.Outbound, Account: "therapist", Sender: "therapist@practice.example",
			Decisions: []record.Decision{{Recipient: client, Address: client, Protection: record.Consented, Reason: "consent",
				Consent: &record.ConsentEvent{ID: 7, Client: "Chart 7", Signed: "2026-01-02", Evidence: "intake form"}}}}
		if err := n.arch.RecordMessage(ctx, m, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	if seal {
		if err := n.arch.CloseSegment(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func (n *node) pass(t *testing.T) {
	t.Helper()
	if err := n.up.pass(context.Background(), true); err != nil {
		t.Fatal(err)
	}
}

// keys lists the bucket's object keys (latest versions).
func keys(t *testing.T, c *minio.Client, bucket string) []string {
	t.Helper()
	var out []string
	for o := range c.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		out = append(out, o.Key)
	}
	return out
}

func countPrefix(ks []string, prefix string) int {
	n := 0
	for _, k := range ks {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// TestUploadThenRestore: sealed segments, the key files, a tail snapshot
// and the head file reach the bucket under the node's name; Restore into
// an empty folder gives an archive that verifies against its head file
// and holds every record, the unsealed ones included.
func TestUploadThenRestore(t *testing.T) {
	s3 := testutil.StartVersityGW(t)
	bucket := s3.NewBucket()
	n := newNode(t, s3, bucket)
	n.send(t, 5, true)
	n.send(t, 5, true)
	n.send(t, 3, false)
	n.pass(t)
	ks := keys(t, s3.Client(), bucket)
	for _, want := range []string{"a/archive/seg-00000001.log", "a/archive/seg-00000002.log", "a/archive/seal.pub", "a/archive/address-hash.key"} {
		if countPrefix(ks, want) != 1 {
			t.Errorf("no %s in %v", want, ks)
		}
	}
	if countPrefix(ks, "a/tail/seg-00000003.log/") != 1 || countPrefix(ks, "a/head/") != 1 {
		t.Fatalf("one tail of seg 3 and one head wanted: %v", ks)
	}
	if st := n.up.Status(); st.Pending != 0 || st.Lag != 0 {
		t.Fatalf("status after a full pass: %+v", st)
	}
	// Nothing new: no new objects.
	n.pass(t)
	if again := keys(t, s3.Client(), bucket); len(again) != len(ks) {
		t.Fatalf("a pass with nothing new uploaded %v", again)
	}
	n.send(t, 2, false)
	n.pass(t)
	if ks = keys(t, s3.Client(), bucket); countPrefix(ks, "a/tail/seg-00000003.log/") != 2 || countPrefix(ks, "a/head/") != 2 {
		t.Fatalf("a second tail and head wanted, each a new object: %v", ks)
	}
	nodes, err := n.client.Nodes(context.Background())
	if err != nil || len(nodes) != 1 || nodes[0] != "a" {
		t.Fatalf("nodes %v %v", nodes, err)
	}

	dir := t.TempDir()
	rep, err := Restore(context.Background(), n.client, "a", dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Segments != 2 || rep.Tail != "seg-00000003.log" || rep.Head.IsZero() {
		t.Fatalf("restore %+v", rep)
	}
	vr, err := archive.VerifyWith(filepath.Join(dir, "archive"), io.Discard, archive.VerifyOptions{})
	if err != nil || !vr.EndChecked {
		t.Fatalf("restored archive: %v %+v", err, vr)
	}
	wantSeq, _ := n.arch.ChainHead()
	if vr.HeadSeq != wantSeq {
		t.Fatalf("restored chain ends at %d, the node's at %d", vr.HeadSeq, wantSeq)
	}
	if _, err := Restore(context.Background(), n.client, "a", dir); err == nil {
		t.Fatal("restored into a folder that is not empty")
	}
	if _, err := Restore(context.Background(), n.client, "b", t.TempDir()); err == nil || !strings.Contains(err.Error(), `no archive of node "b"`) {
		t.Fatalf("restore of a node the bucket lacks: %v", err)
	}
}

// TestLockRefusesDeleteAndOverwrite: with the relay's own keys, deleting
// an uploaded segment's or tail's version is refused by the server, and
// overwriting one leaves the version the relay wrote as it was (S3 keeps
// both; Restore reads the relay's), so the restored archive still verifies.
func TestLockRefusesDeleteAndOverwrite(t *testing.T) {
	s3 := testutil.StartVersityGW(t)
	bucket := s3.NewBucket()
	n := newNode(t, s3, bucket)
	n.send(t, 4, true)
	n.send(t, 2, false)
	n.pass(t)
	mc, ctx := s3.Client(), context.Background()
	var tailKey string
	for _, k := range keys(t, mc, bucket) {
		if strings.HasPrefix(k, "a/tail/") {
			tailKey = k
		}
	}
	for _, key := range []string{"a/archive/seg-00000001.log", tailKey, "a/archive/seal.pub"} {
		st, err := mc.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Metadata.Get("X-Amz-Object-Lock-Mode") != "COMPLIANCE" {
			t.Errorf("%s: lock mode %q", key, st.Metadata.Get("X-Amz-Object-Lock-Mode"))
		}
		err = mc.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{VersionID: st.VersionID, GovernanceBypass: true})
		if err == nil || minio.ToErrorResponse(err).StatusCode != 403 {
			t.Errorf("deleting %s (version %s): %v, want refused", key, st.VersionID, err)
		}
		sooner, gov := time.Now().Add(time.Minute).UTC(), minio.Governance
		for _, mode := range []minio.RetentionMode{minio.Compliance, gov} {
			err = mc.PutObjectRetention(ctx, bucket, key, minio.PutObjectRetentionOptions{VersionID: st.VersionID, Mode: &mode, RetainUntilDate: &sooner, GovernanceBypass: true})
			if err == nil {
				t.Errorf("%s: the retention was shortened (%s)", key, mode)
			}
		}
		if _, err := mc.PutObject(ctx, bucket, key, bytes.NewReader([]byte("rewritten")), 9, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("overwrite %s: %v", key, err)
		}
		// A delete without a version only hides it behind a marker.
		if err := mc.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if _, err := Restore(ctx, n.client, "a", dir); err != nil {
		t.Fatal(err)
	}
	if _, err := archive.VerifyWith(filepath.Join(dir, "archive"), io.Discard, archive.VerifyOptions{}); err != nil {
		t.Fatalf("the restored archive after the overwrites: %v", err)
	}
	// An uploader that lost its state file finds the versions it wrote
	// under the overwrites and delete markers.
	os.Remove(filepath.Join(n.dataDir, StateFile))
	n.up = n.uploader()
	n.pass(t)
}

// TestBacklogAfterS3Returns: while the server is stopped nothing is lost
// locally and the status says how much waits and that the server does not
// answer; once it is back, one pass uploads the backlog.
func TestBacklogAfterS3Returns(t *testing.T) {
	s3 := testutil.StartVersityGW(t)
	bucket := s3.NewBucket()
	n := newNode(t, s3, bucket)
	n.send(t, 2, true)
	n.pass(t)
	s3.Stop()
	n.send(t, 2, true)
	n.send(t, 2, true)
	n.send(t, 1, false)
	if err := n.up.pass(context.Background(), true); err == nil {
		t.Fatal("a pass with the server stopped succeeded")
	} else {
		n.up.lastErr = err
	}
	st := n.up.Status()
	if st.Pending != 4 || !st.Unreachable || st.Lag <= 0 {
		t.Fatalf("status while S3 is down: %+v (want 2 segments, the tail and the head pending)", st)
	}
	s3.Start()
	n.pass(t)
	n.up.lastErr = nil
	if st := n.up.Status(); st.Pending != 0 || st.Lag != 0 {
		t.Fatalf("status after the backlog: %+v", st)
	}
	ks := keys(t, s3.Client(), bucket)
	if countPrefix(ks, "a/archive/seg-") != 3 {
		t.Fatalf("segments in the bucket: %v", ks)
	}
	// A new uploader without the state file finds each file in the bucket
	// as it was uploaded: it writes no second version of any.
	versions := func() int {
		n := 0
		for o := range s3.Client().ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: "a/archive/", Recursive: true, WithVersions: true}) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			n++
		}
		return n
	}
	before := versions()
	os.Remove(filepath.Join(n.dataDir, StateFile))
	n.up = n.uploader()
	n.pass(t)
	if after := versions(); after != before {
		t.Fatalf("after the state file was lost: %d object versions, %d before", after, before)
	}
	if why := MayRemove(filepath.Join(n.dataDir, StateFile))("seg-00000002.log"); why != "" {
		t.Fatalf("an uploaded segment may not be removed: %s", why)
	}
	if why := MayRemove(filepath.Join(n.dataDir, StateFile))("seg-00000009.log"); !strings.Contains(why, "not in the S3 bucket") {
		t.Fatalf("a segment not uploaded: %q", why)
	}
}

// TestLegalHolds: a hold over the segments' days turns S3 legal hold on
// for their objects; releasing it turns it off. (That the hold keeps an
// object past its retention is S3's promise, which versitygw 1.8.0's
// posix backend does not keep: it refuses deleting a held object without
// a retention, but deletes one whose retention has ended, held or not;
// deploy/README.md says so.)
func TestLegalHolds(t *testing.T) {
	s3 := testutil.StartVersityGW(t)
	bucket := s3.NewBucket()
	n := newNode(t, s3, bucket)
	n.send(t, 2, true)
	ctx := context.Background()
	today := time.Now().Format(time.DateOnly)
	id, err := n.arch.Hold(ctx, nil, today, today, "court order")
	if err != nil {
		t.Fatal(err)
	}
	n.send(t, 1, true)
	n.pass(t)
	mc := s3.Client()
	legalHold := func(key string) minio.LegalHoldStatus {
		t.Helper()
		st, err := mc.GetObjectLegalHold(ctx, bucket, key, minio.GetObjectLegalHoldOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *st
	}
	for _, seg := range []string{"seg-00000001.log", "seg-00000002.log"} {
		if got := legalHold("a/archive/" + seg); got != minio.LegalHoldEnabled {
			t.Errorf("%s: legal hold %s while held", seg, got)
		}
	}
	if err := n.arch.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	n.send(t, 1, true)
	n.pass(t)
	for _, seg := range []string{"seg-00000001.log", "seg-00000002.log"} {
		if got := legalHold("a/archive/" + seg); got != minio.LegalHoldDisabled {
			t.Errorf("%s: legal hold %s after the release", seg, got)
		}
	}
}

// TestPruneKeepsWhatIsNotUploaded: past the retention, prune removes the
// segments in the bucket and keeps, from the first one that is not, the
// rest, saying why.
func TestPruneKeepsWhatIsNotUploaded(t *testing.T) {
	s3 := testutil.StartVersityGW(t)
	n := newNode(t, s3, s3.NewBucket())
	ctx := context.Background()
	n.send(t, 2, true)
	n.send(t, 2, true)
	n.pass(t)
	s3.Stop()
	n.send(t, 2, true)
	n.send(t, 1, false)
	// Every sealed segment is past a retention of a nanosecond.
	rep, err := n.arch.Prune(ctx, time.Nanosecond, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rep.Removed, ",") != "seg-00000001.log,seg-00000002.log" {
		t.Fatalf("removed %v, want the two uploaded segments", rep.Removed)
	}
	if rep.Kept != "seg-00000003.log is not in the S3 bucket yet (the off-site copy is behind: sealpost status)" {
		t.Fatalf("kept: %q", rep.Kept)
	}
	if _, err := os.Stat(filepath.Join(n.dataDir, "archive", "seg-00000003.log")); err != nil {
		t.Fatal(err)
	}
}

// TestRunStopsWithinASecond: an upload to a server that takes the
// connection and never answers is abandoned when the relay stops.
func TestRunStopsWithinASecond(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dataDir := t.TempDir()
	pub, _, err := archive.EnsureKey(dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	a, err := archive.Open(archive.Options{Dir: filepath.Join(dataDir, "archive"), PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	client, err := New(Config{Endpoint: "http://" + l.Addr().String(), Bucket: "record", Region: "us-east-1", AccessKey: "k", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	up := NewUploader(Options{Client: client, Node: "a", ArchiveDir: a.Dir(), HeadFile: archive.HeadFile(a.Dir()),
		StateFile: filepath.Join(dataDir, StateFile), Retention: retention, TailInterval: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { up.Run(ctx); close(done) }()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the uploader never connected")
	}
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run did not return within a second of the stop")
	}
	t.Logf("stopped %s after the cancel", time.Since(start))
}

// TestCheckLock: sealpost check's question to the bucket: a bucket made
// without Object Lock is named as such.
func TestCheckLock(t *testing.T) {
	s3 := testutil.StartVersityGW(t)
	locked := s3.NewBucket()
	if err := s3.Client().MakeBucket(context.Background(), "plain", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		bucket, want string
	}{{locked, ""}, {"plain", "Object Lock"}} {
		c, err := New(Config{Endpoint: s3.Endpoint, Bucket: tt.bucket, Region: "us-east-1", AccessKey: s3.AccessKey, SecretKey: s3.SecretKey})
		if err != nil {
			t.Fatal(err)
		}
		err = c.CheckLock(context.Background())
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("bucket %s: %v, want %q", tt.bucket, err, tt.want)
		}
	}
}

// TestPrivateCA: an S3 server with a certificate from a private CA is
// reached with ca_file, and refused without it.
func TestPrivateCA(t *testing.T) {
	pki := testutil.NewPKI(t)
	s3 := testutil.StartVersityGWTLS(t, pki)
	bucket := s3.NewBucket()
	access, secret := s3.ReadOnlyUser(bucket)
	for _, tt := range []struct {
		ca   string
		want string
	}{{pki.CAFile, ""}, {"", "certificate"}} {
		c, err := New(Config{Endpoint: s3.Endpoint, Bucket: bucket, Region: "us-east-1", AccessKey: access, SecretKey: secret, CAFile: tt.ca})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Nodes(context.Background())
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("ca_file %q: %v, want %q", tt.ca, err, tt.want)
		}
	}
}

// TestAuditorReadOnlyKeys: keys that may only list and read the bucket
// (deploy/README.md's auditor) are enough to restore and verify a node,
// and cannot add to the bucket.
func TestAuditorReadOnlyKeys(t *testing.T) {
	s3 := testutil.StartVersityGW(t)
	bucket := s3.NewBucket()
	n := newNode(t, s3, bucket)
	n.send(t, 3, true)
	n.send(t, 1, false)
	n.pass(t)
	access, secret := s3.ReadOnlyUser(bucket)
	auditor, err := New(Config{Endpoint: s3.Endpoint, Bucket: bucket, Region: "us-east-1", AccessKey: access, SecretKey: secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if nodes, err := auditor.Nodes(ctx); err != nil || len(nodes) != 1 {
		t.Fatalf("nodes with read-only keys: %v %v", nodes, err)
	}
	dir := t.TempDir()
	if _, err := Restore(ctx, auditor, "a", dir); err != nil {
		t.Fatalf("restore with read-only keys: %v", err)
	}
	if _, err := archive.VerifyWith(filepath.Join(dir, "archive"), io.Discard, archive.VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := auditor.putOnce(ctx, "a/archive/seg-00000009.log", bytes.NewReader([]byte("x")), 1, sum([]byte("x")), time.Now().Add(time.Hour)); err == nil {
		t.Fatal("read-only keys uploaded an object")
	}
}

// TestRestoreSkipsStrangeKeys: keys below the node that name nothing an
// archive holds (someone with write access to the bucket put them there)
// are named in the report and written nowhere, inside the folder or out.
func TestRestoreSkipsStrangeKeys(t *testing.T) {
	s3 := testutil.StartVersityGW(t)
	bucket := s3.NewBucket()
	n := newNode(t, s3, bucket)
	n.send(t, 2, true)
	n.send(t, 1, false)
	n.pass(t)
	mc, ctx := s3.Client(), context.Background()
	strange := []string{"a/archive/notes.txt", "a/archive/sub/seg-00000009.log", "a/tail/seg-00000009.log/yesterday", "a/tail/evil/20991231T000000.000Z", "a/head/latest"}
	for _, k := range strange {
		if _, err := mc.PutObject(ctx, bucket, k, bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	root := t.TempDir()
	dir := filepath.Join(root, "restored")
	rep, err := Restore(ctx, n.client, "a", dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rep.Skipped, " ") != "a/archive/notes.txt a/archive/sub/seg-00000009.log a/head/latest a/tail/evil/20991231T000000.000Z a/tail/seg-00000009.log/yesterday" {
		t.Fatalf("skipped %v", rep.Skipped)
	}
	if rep.Tail != "seg-00000002.log" {
		t.Fatalf("tail %q", rep.Tail)
	}
	var files []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files)
	want := "restored/archive-head restored/archive/address-hash.key restored/archive/seal.key restored/archive/seal.pub restored/archive/seg-00000001.log restored/archive/seg-00000002.log"
	if strings.Join(files, " ") != want {
		t.Fatalf("files written: %v", files)
	}
}

// TestKeyTakenByAnotherObject: an object with other content already at a
// segment's key (put there by someone with write access to the bucket) is
// never taken for the segment: the pass fails saying so, and prune keeps
// the local segment.
func TestKeyTakenByAnotherObject(t *testing.T) {
	s3 := testutil.StartVersityGW(t)
	bucket := s3.NewBucket()
	n := newNode(t, s3, bucket)
	n.send(t, 2, true)
	n.send(t, 1, false)
	if _, err := s3.Client().PutObject(context.Background(), bucket, "a/archive/seg-00000001.log", bytes.NewReader([]byte("forged")), 6, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	err := n.up.pass(context.Background(), true)
	if !errors.Is(err, errExists) {
		t.Fatalf("pass over a key taken by another object: %v", err)
	}
	if why := MayRemove(filepath.Join(n.dataDir, StateFile))("seg-00000001.log"); why == "" {
		t.Fatal("prune may remove the segment S3 does not hold")
	}
}
