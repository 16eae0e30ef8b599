package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/archive/offsite"
)

// downloadChains restores the chain of every node in the bucket (or only
// node's) into root/NODE, as archive restore does: the chains verify and
// export then read them as an auditor's copies.
func downloadChains(ctx context.Context, w io.Writer, client *offsite.Client, node, root string) ([]archive.Chain, error) {
	nodes := []string{node}
	if node == "" {
		var err error
		if nodes, err = client.Nodes(ctx); err != nil {
			return nil, err
		}
		if len(nodes) == 0 {
			return nil, fmt.Errorf("%s holds no archive", client.Where())
		}
	}
	var chains []archive.Chain
	for _, n := range nodes {
		fmt.Fprintf(w, "Node %s: downloading its whole chain from %s.\n", n, client.Where())
		dir := filepath.Join(root, n)
		if _, err := offsite.Restore(ctx, client, n, dir); err != nil {
			return nil, fmt.Errorf("node %s: %w", n, err)
		}
		chains = append(chains, archive.Chain{Dir: filepath.Join(dir, "archive")})
	}
	return chains, nil
}

// startBucketChains is startChains for --s3: the flags parsed, every
// node's chain in the bucket [archive.s3] names (or node's) downloaded
// into a temporary folder, which done removes.
func (c *cli) startBucketChains(ctx context.Context, fs *flag.FlagSet, args []string, dirs *fileList, node *string, checks ...func() error) (chains []archive.Chain, done func(), err error) {
	if err := c.parseArchiveArgs(fs, args, checks); err != nil {
		return nil, nil, err
	}
	if len(*dirs) > 0 {
		return nil, nil, usagef("--s3 reads the bucket's copy: give --s3 or --archive, not both")
	}
	_, client, err := bucketAccess(c)
	if err != nil {
		return nil, nil, err
	}
	root, err := os.MkdirTemp("", "sealpost-s3-chains-")
	if err != nil {
		return nil, nil, err
	}
	done = func() { os.RemoveAll(root) }
	if chains, err = downloadChains(ctx, c.stdout, client, *node, root); err != nil {
		done()
		return nil, nil, err
	}
	return chains, done, nil
}
