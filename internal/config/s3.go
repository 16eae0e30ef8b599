package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// ArchiveS3Config is [archive.s3]: the off-site copy of the record in an S3
// bucket with Object Lock. The keys are read from their files, never from
// the configuration.
type ArchiveS3Config struct {
	Endpoint      string   `toml:"endpoint"` // https://host[:port]; http only to 127.0.0.1
	Bucket        string   `toml:"bucket"`
	Region        string   `toml:"region"`
	Prefix        string   `toml:"prefix"`          // optional, ends in "/"
	AccessKeyFile string   `toml:"access_key_file"` // first line: the access key id
	SecretKeyFile string   `toml:"secret_key_file"` // first line: the secret key
	CAFile        string   `toml:"ca_file"`         // a private CA for the server's certificate
	TailInterval  Duration `toml:"tail_interval"`   // how often the unsealed segment is copied (default 5m)
}

// defaultTailInterval bounds what a lost disk can take with it: the
// records of the segment being written since the last copy.
const defaultTailInterval = 5 * time.Minute

// Offsite says whether the record is copied to S3.
func (c *Config) Offsite() bool { return c.Archive.S3 != nil }

// NodeName is archive.node, or "main" on a practice's only relay.
func (c *Config) NodeName() string { return nodeName(c.Archive.Node) }

func nodeName(n string) string {
	if n == "" {
		return "main"
	}
	return n
}

// Plaintext says whether the endpoint is plain HTTP (to 127.0.0.1 only:
// sealpost check names it).
func (s *ArchiveS3Config) Plaintext() bool { return strings.HasPrefix(s.Endpoint, "http://") }

// validateArchiveS3 checks [archive.s3] and fills in its default.
func (c *Config) validateArchiveS3(bad reporter) {
	s := c.Archive.S3
	if s == nil {
		return
	}
	checkArchiveS3(s, bad)
}

func checkArchiveS3(s *ArchiveS3Config, bad reporter) {
	if s.TailInterval == 0 {
		s.TailInterval = Duration(defaultTailInterval)
	}
	if err := checkS3Endpoint(s.Endpoint); err != nil {
		bad("archive.s3.endpoint", "%v", err)
	}
	if s.Bucket == "" {
		bad("archive.s3.bucket", "must name the bucket (made with Object Lock on: see deploy/README.md)")
	}
	if s.Prefix != "" && (!strings.HasSuffix(s.Prefix, "/") || strings.HasPrefix(s.Prefix, "/")) {
		bad("archive.s3.prefix", "must end in / and not begin with one, like \"practice/\", not %q", s.Prefix)
	}
	if s.AccessKeyFile == "" || s.SecretKeyFile == "" {
		bad("archive.s3.access_key_file", "access_key_file and secret_key_file must name the files that hold the keys (first line each); keys are never written into the configuration")
	}
	if d := s.TailInterval.D(); d < time.Second || d > time.Hour {
		bad("archive.s3.tail_interval", "must be between 1s and 1h (what a lost disk can take with it is the records of this span), not %s", d)
	}
}

func checkS3Endpoint(e string) error {
	u, err := url.Parse(e)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("must be https://HOST or https://HOST:PORT, not %q", e)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() && ip.To4() != nil {
			return nil
		}
		return fmt.Errorf("must be https:// (the record and the keys travel in it); http:// only to 127.0.0.1, not %q", e)
	}
	return fmt.Errorf("must be https://HOST or https://HOST:PORT, not %q", e)
}

// S3Keys reads the access key and secret key from their files.
func (s *ArchiveS3Config) S3Keys() (access, secret string, err error) {
	if access, err = ReadSecret(s.AccessKeyFile); err != nil {
		return "", "", fmt.Errorf("archive.s3.access_key_file: %w", err)
	}
	if secret, err = ReadSecret(s.SecretKeyFile); err != nil {
		return "", "", fmt.Errorf("archive.s3.secret_key_file: %w", err)
	}
	return access, secret, nil
}

func (s *ArchiveS3Config) resolve(base string) {
	for _, p := range []*string{&s.AccessKeyFile, &s.SecretKeyFile, &s.CAFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// BucketAccess is what reads the off-site copy: [archive.s3] and the node
// name, from a configuration that may hold nothing else (an auditor's).
type BucketAccess struct {
	S3        ArchiveS3Config
	Node      string // archive.node, "main" when empty
	Retention time.Duration
}

// LoadBucketAccess reads [archive] and [archive.s3] of a configuration
// file and ignores every other section: an auditor's configuration holds
// those alone, with read-only keys; a relay's full one does too.
func LoadBucketAccess(path string) (*BucketAccess, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	var doc struct {
		Archive struct {
			Node      string           `toml:"node"`
			Retention Duration         `toml:"retention"`
			S3        *ArchiveS3Config `toml:"s3"`
		} `toml:"archive"`
	}
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Archive.S3 == nil {
		return nil, errors.New(path + " has no [archive.s3] section: it names the bucket and the files with its keys")
	}
	var es Errors
	bad := func(key, format string, args ...any) {
		es = append(es, Error{File: path, Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if doc.Archive.Node != "" && !validNodeName.MatchString(doc.Archive.Node) {
		bad("archive.node", "must be 1 to 32 lowercase letters, digits or dashes, not %q", doc.Archive.Node)
	}
	checkArchiveS3(doc.Archive.S3, bad)
	if len(es) > 0 {
		return nil, es
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	doc.Archive.S3.resolve(filepath.Dir(abs))
	retention := doc.Archive.Retention.D()
	if retention == 0 {
		retention = defaults().Archive.Retention.D()
	}
	return &BucketAccess{S3: *doc.Archive.S3, Node: nodeName(doc.Archive.Node), Retention: retention}, nil
}
