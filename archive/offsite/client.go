// Package offsite keeps a copy of the clinical record in an S3 bucket with
// Object Lock, where nobody, not even an admin with the server's keys, can
// delete or rewrite it before the retention ends: every sealed segment
// once, the segment being written every tail_interval as a new object, the
// signed head file, and the keys verify and export read. The local archive
// stays the durable one (the 250 never waits for S3): the uploader reads
// the archive folder, never writes it, and catches up when S3 returns.
// Restore brings one node's copy back into a folder laid out as a data_dir.
//
// Object keys, under the configured prefix:
//
//	NODE/archive/seg-NNNNNNNN.log         a sealed segment, uploaded once
//	NODE/archive/seal.pub (seal.key, address-hash.key)
//	NODE/tail/seg-NNNNNNNN.log/STAMP      the unsealed segment as it was at STAMP
//	NODE/head/STAMP                       data_dir/archive-head at STAMP
//
// STAMP is UTC, 20060102T150405.000Z. Every object is written with Object
// Lock in COMPLIANCE mode until its retention end, and never over another
// (If-None-Match: *).
package offsite

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Config is how to reach the bucket.
type Config struct {
	Endpoint  string // https://host[:port], or http://127.0.0.1:port
	Bucket    string
	Region    string // empty: asked of the server
	Prefix    string // "" or ending in "/"
	AccessKey string
	SecretKey string
	CAFile    string // a private CA for the server's certificate
	// Retries is how often one request is tried again before its error
	// is returned (the uploader has its own backoff: 0 there).
	Retries int
}

// Client reads and writes one bucket.
type Client struct {
	mc       *minio.Client
	bucket   string
	prefix   string
	endpoint string
}

// stampLayout names tail and head objects by their upload time; it sorts as
// the times do.
const stampLayout = "20060102T150405.000Z"

// New makes a client; it does not connect.
func New(c Config) (*Client, error) {
	u, err := url.Parse(c.Endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("offsite: the endpoint %q is not https://HOST[:PORT]", c.Endpoint)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("offsite: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("offsite: ca_file %s holds no PEM certificate", c.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
	mc, err := minio.New(u.Host, &minio.Options{
		Creds:      credentials.NewStaticV4(c.AccessKey, c.SecretKey, ""),
		Secure:     u.Scheme == "https",
		Region:     c.Region,
		Transport:  tr,
		MaxRetries: c.Retries + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("offsite: %w", err)
	}
	return &Client{mc: mc, bucket: c.Bucket, prefix: c.Prefix, endpoint: c.Endpoint}, nil
}

// Where names the bucket for people: "https://host (bucket B)".
func (c *Client) Where() string { return fmt.Sprintf("%s (bucket %s)", c.endpoint, c.bucket) }

func (c *Client) segmentKey(node, name string) string { return c.prefix + node + "/archive/" + name }

func (c *Client) tailKey(node, segment string, t time.Time) string {
	return c.prefix + node + "/tail/" + segment + "/" + t.UTC().Format(stampLayout)
}

func (c *Client) headKey(node string, t time.Time) string {
	return c.prefix + node + "/head/" + t.UTC().Format(stampLayout)
}

// CheckLock asks the bucket whether Object Lock is on: without it nothing
// the relay uploads would be protected (the uploads themselves would be
// refused too, as S3 refuses lock headers on such a bucket).
func (c *Client) CheckLock(ctx context.Context) error {
	enabled, _, _, _, err := c.mc.GetObjectLockConfig(ctx, c.bucket)
	if err != nil {
		return fmt.Errorf("offsite: %s: %w", c.Where(), err)
	}
	if enabled != "Enabled" {
		return fmt.Errorf("offsite: %s does not have Object Lock on: make a bucket with it (deploy/README.md)", c.Where())
	}
	return nil
}

// Nodes lists the nodes whose chains are in the bucket.
func (c *Client) Nodes(ctx context.Context) ([]string, error) {
	var out []string
	for o := range c.mc.ListObjects(ctx, c.bucket, minio.ListObjectsOptions{Prefix: c.prefix}) {
		if o.Err != nil {
			return nil, fmt.Errorf("offsite: list %s: %w", c.Where(), o.Err)
		}
		if n, ok := strings.CutSuffix(strings.TrimPrefix(o.Key, c.prefix), "/"); ok && n != "" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// errExists: a different object is already at the key.
var errExists = errors.New("an object is already at this key")

// putOnce uploads size bytes from r under key with Object Lock COMPLIANCE
// until retainUntil, never over another object. An object already there
// with the same SHA-256 (an upload whose answer was lost, or the state file
// lost) counts as this upload. It returns the version written.
func (c *Client) putOnce(ctx context.Context, key string, r io.ReadSeeker, size int64, sum string, retainUntil time.Time) (string, error) {
	if v, err := c.sameObject(ctx, key, sum); err != nil || v != "" {
		return v, err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	opts := minio.PutObjectOptions{
		Mode: minio.Compliance, RetainUntilDate: retainUntil.UTC(),
		UserMetadata:   map[string]string{"sha256": sum},
		ContentType:    "application/octet-stream",
		SendContentMd5: true, PartSize: 16 << 20, NumThreads: 1,
	}
	opts.SetMatchETagExcept("*")
	info, err := c.mc.PutObject(ctx, c.bucket, key, r, size, opts)
	if err == nil {
		return info.VersionID, nil
	}
	if minio.ToErrorResponse(err).StatusCode == http.StatusPreconditionFailed {
		if v, serr := c.sameObject(ctx, key, sum); serr != nil || v != "" {
			return v, serr
		}
		return "", fmt.Errorf("offsite: %s: %w", key, errExists)
	}
	return "", fmt.Errorf("offsite: upload %s: %w", key, err)
}

// sameObject returns the version at key the relay wrote (the oldest) when
// it was uploaded with the SHA-256 sum; "" when there is none at key;
// errExists when it holds other bytes (someone wrote there first). Newer
// versions, which anyone may put over it, are never taken for it.
func (c *Client) sameObject(ctx context.Context, key, sum string) (string, error) {
	found, err := c.oldestVersions(ctx, key)
	if err != nil {
		return "", err
	}
	v, ok := found[""]
	if !ok {
		return "", nil
	}
	st, err := c.mc.StatObject(ctx, c.bucket, key, minio.StatObjectOptions{VersionID: v.id})
	if err != nil {
		return "", fmt.Errorf("offsite: %s: %w", key, err)
	}
	if st.UserMetadata["Sha256"] != sum && st.UserMetadata["sha256"] != sum {
		return "", fmt.Errorf("offsite: %s: %w, with other content", key, errExists)
	}
	if st.VersionID == "" {
		return "-", nil
	}
	return st.VersionID, nil
}

// setLegalHold turns the legal hold of one object version on or off.
func (c *Client) setLegalHold(ctx context.Context, key, version string, on bool) error {
	st := minio.LegalHoldDisabled
	if on {
		st = minio.LegalHoldEnabled
	}
	if version == "-" {
		version = ""
	}
	if err := c.mc.PutObjectLegalHold(ctx, c.bucket, key, minio.PutObjectLegalHoldOptions{VersionID: version, Status: &st}); err != nil {
		return fmt.Errorf("offsite: legal hold on %s: %w", key, err)
	}
	return nil
}

// fileSum is a file's SHA-256 over its first size bytes.
func fileSum(f io.ReaderAt, size int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
