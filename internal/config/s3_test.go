package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestArchiveS3Config: [archive.s3] is named by key and line when it would
// send the record in clear beyond this machine or lacks its key files; the
// key files are read relative to the configuration; tail_interval defaults
// to five minutes.
func TestArchiveS3Config(t *testing.T) {
	base := oneAccount(t) + `[archive]
node = "a1"
[archive.s3]
bucket = "record"
access_key_file = "s3-access"
secret_key_file = "s3-secret"
`
	tests := []struct {
		name, toml string
		want       []string
	}{
		{"https", `endpoint = "https://s3.eu-central-1.amazonaws.com"`, nil},
		{"http to loopback", `endpoint = "http://127.0.0.1:7070"`, nil},
		{"http elsewhere", `endpoint = "http://s3.practice.example"`, []string{":14: archive.s3.endpoint: ", "127.0.0.1"}},
		{"no scheme", `endpoint = "s3.practice.example:9000"`, []string{"archive.s3.endpoint: must be https://HOST"}},
		{"a path", `endpoint = "https://s3.practice.example/record"`, []string{"archive.s3.endpoint"}},
		{"prefix without slash", "endpoint = \"https://s3.example\"\nprefix = \"practice\"", []string{"archive.s3.prefix: must end in /"}},
		{"tail too long", "endpoint = \"https://s3.example\"\ntail_interval = \"2h\"", []string{"archive.s3.tail_interval"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "sealpost.toml")
			os.WriteFile(path, []byte(base+tt.toml+"\n"), 0o600)
			cfg, err := Load(path)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				s := cfg.Archive.S3
				if s.AccessKeyFile != filepath.Join(dir, "s3-access") || s.TailInterval.D() != 5*time.Minute || cfg.NodeName() != "a1" {
					t.Fatalf("got %+v, node %s", s, cfg.NodeName())
				}
				return
			}
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestLoadBucketAccess: an auditor's configuration with [archive.s3] alone
// is enough to reach the bucket; keys in it are refused.
func TestLoadBucketAccess(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "auditor.toml")
	os.WriteFile(filepath.Join(dir, "ak"), []byte("AKIA\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "sk"), []byte("secret\nignored\n"), 0o600)
	os.WriteFile(path, []byte("[archive.s3]\nendpoint = \"https://s3.example\"\nbucket = \"record\"\naccess_key_file = \"ak\"\nsecret_key_file = \"sk\"\n"), 0o600)
	b, err := LoadBucketAccess(path)
	if err != nil {
		t.Fatal(err)
	}
	ak, sk, err := b.S3.S3Keys()
	if err != nil || ak != "AKIA" || sk != "secret" || b.Node != "main" || b.Retention != 7*365*24*time.Hour {
		t.Fatalf("%q %q %v %+v", ak, sk, err, b)
	}
	os.WriteFile(path, []byte("[archive.s3]\nendpoint = \"https://s3.example\"\nbucket = \"record\"\n"), 0o600)
	if _, err := LoadBucketAccess(path); err == nil || !strings.Contains(err.Error(), "access_key_file") {
		t.Fatalf("without key files: %v", err)
	}
	os.WriteFile(path, []byte("data_dir = \"d\"\n"), 0o600)
	if _, err := LoadBucketAccess(path); err == nil || !strings.Contains(err.Error(), "no [archive.s3]") {
		t.Fatalf("without the section: %v", err)
	}
}
