package offsite

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sealpost/sealpost/archive"
)

// RestoreReport says what Restore brought back.
type RestoreReport struct {
	Node     string
	Segments int       // sealed segments
	Tail     string    // the unsealed segment, from its newest snapshot ("" when none)
	TailTime time.Time // when that snapshot was taken
	Head     time.Time // when the head file was uploaded (zero: none in the bucket)
	Bytes    int64
	// Skipped are keys below the node that name nothing an archive
	// holds: never written anywhere (a key is no path to write to).
	Skipped []string
}

// version is one object version found in a listing.
type version struct {
	key, id string
	at      time.Time
}

// Restore downloads one node's copy into dir, laid out as a data_dir:
// dir/archive/ its sealed segments and key files, and the newest snapshot
// of the segment that was being written; dir/archive-head the newest head
// file. Of each object it reads the version the relay wrote (the oldest),
// and checks its SHA-256. dir/archive must not exist yet or be empty.
func Restore(ctx context.Context, c *Client, node, dir string) (*RestoreReport, error) {
	arch := filepath.Join(dir, "archive")
	if ents, err := os.ReadDir(arch); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("offsite: %s is not empty: restore into a new folder", arch)
	}
	if err := os.MkdirAll(arch, 0o700); err != nil {
		return nil, fmt.Errorf("offsite: %w", err)
	}
	rep := &RestoreReport{Node: node}
	files, err := c.oldestVersions(ctx, c.segmentKey(node, ""))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("offsite: %s holds no archive of node %q (sealpost archive verify --s3 lists the nodes it holds)", c.Where(), node)
	}
	newestSealed := ""
	for name, v := range files {
		if !archive.IsSegmentName(name) && !slices.Contains(archive.KeyFiles, name) {
			rep.Skipped = append(rep.Skipped, v.key)
			continue
		}
		n, err := c.download(ctx, v, filepath.Join(arch, name))
		if err != nil {
			return nil, err
		}
		rep.Bytes += n
		if archive.IsSegmentName(name) {
			rep.Segments++
			newestSealed = max(newestSealed, name)
		}
	}
	tails, err := c.oldestVersions(ctx, c.prefix+node+"/tail/")
	if err != nil {
		return nil, err
	}
	if tail, ok := newestByKey(tails, rep, true); ok {
		seg, stamp, _ := strings.Cut(tail.name, "/")
		if seg > newestSealed {
			n, err := c.download(ctx, tail.v, filepath.Join(arch, seg))
			if err != nil {
				return nil, err
			}
			rep.Bytes += n
			rep.Tail = seg
			rep.TailTime, _ = time.Parse(stampLayout, stamp)
		}
	}
	heads, err := c.oldestVersions(ctx, c.prefix+node+"/head/")
	if err != nil {
		return nil, err
	}
	if head, ok := newestByKey(heads, rep, false); ok {
		if _, err := c.download(ctx, head.v, filepath.Join(dir, "archive-head")); err != nil {
			return nil, err
		}
		rep.Head, _ = time.Parse(stampLayout, head.name)
	}
	sort.Strings(rep.Skipped)
	return rep, nil
}

type named struct {
	name string
	v    version
}

// newestByKey is the object whose name (below its folder) sorts last: a
// head's name is its upload time, a tail's its segment's name, "/" and its
// upload time. Names of another form are added to rep.Skipped.
func newestByKey(m map[string]version, rep *RestoreReport, tails bool) (named, bool) {
	var names []string
	for n, v := range m {
		stamp, seg := n, ""
		if tails {
			seg, stamp, _ = strings.Cut(n, "/")
		}
		if _, err := time.Parse(stampLayout, stamp); err != nil || tails && !archive.IsSegmentName(seg) {
			rep.Skipped = append(rep.Skipped, v.key)
			continue
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return named{}, false
	}
	sort.Strings(names)
	n := names[len(names)-1]
	return named{n, m[n]}, true
}

// oldestVersions lists the objects below dir (a key prefix), each by its
// name below dir with its oldest version: the one the relay wrote. A later
// version is someone's overwrite, which Object Lock does not refuse but
// which leaves the locked version as it was.
func (c *Client) oldestVersions(ctx context.Context, dir string) (map[string]version, error) {
	out := map[string]version{}
	for o := range c.mc.ListObjects(ctx, c.bucket, minio.ListObjectsOptions{Prefix: dir, Recursive: true, WithVersions: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("offsite: list %s: %w", c.Where(), o.Err)
		}
		if o.IsDeleteMarker {
			continue
		}
		name := strings.TrimPrefix(o.Key, dir)
		// Versions come newest first: the last one seen is the oldest.
		if prev, ok := out[name]; !ok || !o.LastModified.After(prev.at) {
			out[name] = version{key: o.Key, id: o.VersionID, at: o.LastModified}
		}
	}
	return out, nil
}

// download writes one object version into path (through a temporary file)
// and checks it against the SHA-256 it was uploaded with.
func (c *Client) download(ctx context.Context, v version, path string) (int64, error) {
	obj, err := c.mc.GetObject(ctx, c.bucket, v.key, minio.GetObjectOptions{VersionID: v.id})
	if err != nil {
		return 0, fmt.Errorf("offsite: %s: %w", v.key, err)
	}
	defer obj.Close()
	st, err := obj.Stat()
	if err != nil {
		return 0, fmt.Errorf("offsite: %s: %w", v.key, err)
	}
	want := st.UserMetadata["Sha256"]
	tmp, err := os.CreateTemp(filepath.Dir(path), ".restore-*")
	if err != nil {
		return 0, fmt.Errorf("offsite: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), obj)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("offsite: %s: %w", v.key, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); want != "" && got != want {
		return 0, fmt.Errorf("offsite: %s (version %s) does not hold what was uploaded: SHA-256 %s, uploaded as %s", v.key, v.id, got, want)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, fmt.Errorf("offsite: %w", err)
	}
	return n, nil
}
