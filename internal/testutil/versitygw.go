package testutil

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Server is a private S3 server with Object Lock for one test: versitygw
// (github.com/versity/versitygw, .ci/run installs it) on its posix backend
// with versioning, in temporary folders, on 127.0.0.1 and a free port,
// stopped when the test ends. Its root user's keys are AccessKey and
// SecretKey.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:PORT, or https:// with a PKI
	Addr      string // 127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Dir       string // the buckets' folders (objects are files below Dir/BUCKET)
	admin     string // the admin API's address, for users

	t       testing.TB
	pki     *PKI
	args    []string
	log     *LockedBuffer
	cmd     *exec.Cmd
	exited  chan struct{}
	buckets atomic.Int64
}

// StartVersityGW starts the server; it skips (fails under
// SEALPOST_E2E=require) where versitygw is not installed.
func StartVersityGW(t testing.TB) *S3Server {
	t.Helper()
	return startVersityGW(t, nil)
}

// StartVersityGWTLS starts the server with pki's certificate (for
// localhost and 127.0.0.1): its endpoint is https://.
func StartVersityGWTLS(t testing.TB, pki *PKI) *S3Server {
	t.Helper()
	return startVersityGW(t, pki)
}

func startVersityGW(t testing.TB, pki *PKI) *S3Server {
	t.Helper()
	RequireTools(t, "versitygw")
	root := t.TempDir()
	s := &S3Server{t: t, pki: pki, AccessKey: "sealpost-test", SecretKey: "sealpost-test-secret",
		Dir: filepath.Join(root, "buckets"), log: &LockedBuffer{}}
	versions, iam := filepath.Join(root, "versions"), filepath.Join(root, "iam")
	for _, d := range []string{s.Dir, versions, iam} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.Endpoint = "http://" + s.Addr
	s.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.args = []string{"--access", s.AccessKey, "--secret", s.SecretKey, "--port", s.Addr, "--quiet", "--iam-dir", iam, "--admin-port", s.admin}
	if pki != nil {
		s.Endpoint = "https://" + s.Addr
		s.args = append(s.args, "--cert", pki.CertFile, "--key", pki.KeyFile)
	}
	s.args = append(s.args, "posix", "--versioning-dir", versions, s.Dir)
	s.Start()
	t.Cleanup(func() {
		if s.cmd != nil {
			s.Stop()
		}
	})
	return s
}

// Start starts the server (again, after Stop, with the same objects on
// the same port) and waits until it answers.
func (s *S3Server) Start() {
	s.t.Helper()
	s.cmd = exec.Command("versitygw", s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("versitygw: %v", err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { cmd.Wait(); close(exited) }(s.cmd, s.exited)
	client := &http.Client{Timeout: time.Second}
	if s.pki != nil {
		client.Transport = &http.Transport{TLSClientConfig: s.pki.ClientTLS()}
	}
	WaitFor(s.t, "versitygw to answer on "+s.Addr, func() bool {
		select {
		case <-s.exited:
			s.t.Fatalf("versitygw exited: %s", s.log)
		default:
		}
		resp, err := client.Get(s.Endpoint + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
}

// Stop stops the server; its port no longer answers when Stop returns.
func (s *S3Server) Stop() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
	WaitFor(s.t, "versitygw's port to close", func() bool {
		c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
}

// Client is a minio-go client with the root user's keys: what a test uses
// to look at the bucket, or to try what an attacker with the relay's keys
// would.
func (s *S3Server) Client() *minio.Client {
	s.t.Helper()
	opts := &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: "us-east-1", Secure: s.pki != nil}
	if s.pki != nil {
		opts.Transport = &http.Transport{TLSClientConfig: s.pki.ClientTLS()}
	}
	c, err := minio.New(s.Addr, opts)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// NewBucket makes a bucket with Object Lock (and so versioning) on, as
// deploy/README.md tells admins to, and returns its name.
func (s *S3Server) NewBucket() string {
	s.t.Helper()
	name := fmt.Sprintf("record-%d", s.buckets.Add(1))
	if err := s.Client().MakeBucket(context.Background(), name, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		s.t.Fatalf("make bucket %s: %v", name, err)
	}
	return name
}

// WriteKeys writes the root user's keys into files in dir, as
// access_key_file and secret_key_file name them, and returns their paths.
func (s *S3Server) WriteKeys(dir string) (accessFile, secretFile string) {
	s.t.Helper()
	accessFile, secretFile = filepath.Join(dir, "s3-access-key"), filepath.Join(dir, "s3-secret-key")
	for p, v := range map[string]string{accessFile: s.AccessKey, secretFile: s.SecretKey} {
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	return accessFile, secretFile
}

// ReadOnlyUser makes a user that may list and read the bucket and nothing
// else (what deploy/README.md gives an auditor), and returns its keys.
func (s *S3Server) ReadOnlyUser(bucket string) (access, secret string) {
	s.t.Helper()
	access, secret = "auditor-"+bucket, "auditor-secret-"+bucket
	// The admin API is plain HTTP on loopback: no --admin-cert is given.
	out, err := exec.Command("versitygw", "admin", "--access", s.AccessKey, "--secret", s.SecretKey,
		"--endpoint-url", "http://"+s.admin, "create-user", "--access", access, "--secret", secret, "--role", "user").CombinedOutput()
	if err != nil {
		s.t.Fatalf("versitygw admin create-user: %v\n%s", err, out)
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":[%q]},`+
		`"Action":["s3:GetObject","s3:GetObjectVersion","s3:ListBucket","s3:ListBucketVersions"],`+
		`"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, access, bucket, bucket)
	if err := s.Client().SetBucketPolicy(context.Background(), bucket, policy); err != nil {
		s.t.Fatalf("bucket policy: %v", err)
	}
	return access, secret
}
