package main

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/archive/auditimap"
)

func init() {
	register(&command{
		name:    "archive serve-imap",
		args:    "--key FILE [--key FILE ...] [--listen ADDR] [--passphrase-file FILE ...]",
		summary: "serve the record read-only over IMAP (TLS) to the [[archive.viewer]] logins",
		run:     runArchiveServeIMAP,
	})
}

func runArchiveServeIMAP(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var keyFile fileList
	fs.Var(&keyFile, "key", "the archive's private key (required; once per key after a change of archive key)")
	listen := fs.String("listen", "127.0.0.1:1993", "address for IMAP over TLS")
	var ppFiles fileList
	fs.Var(&ppFiles, "passphrase-file", "a file holding a private key's passphrase (once per passphrase when the keys have different ones; otherwise asked on the terminal)")
	_, cfg, err := c.start(fs, args, noArgs, func() error {
		if len(keyFile) == 0 {
			return usagef("--key is required: the view decrypts the record")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(cfg.Archive.Viewers) == 0 {
		return errors.New("no [[archive.viewer]] in the configuration: nobody could log in (add one with a password_hash from sealpost passwd)")
	}
	log := newLogger(cfg, c.stderr)
	key, err := loadArchiveKeys(c, keyFile, ppFiles)
	if err != nil {
		return err
	}
	view, err := archive.OpenView(cfg.ArchiveDir(), key)
	if err != nil {
		return err
	}
	defer view.Close()
	tc, err := serverTLS(cfg, log)
	if err != nil {
		return err
	}
	var viewers []auditimap.Viewer
	for _, v := range cfg.Archive.Viewers {
		viewers = append(viewers, auditimap.Viewer{Username: v.Username, PasswordHash: v.PasswordHash})
	}
	// UIDs are record numbers; the validity follows the archive's identity
	// (its seal key), so a different archive never looks like this one.
	seal, _ := os.ReadFile(filepath.Join(cfg.ArchiveDir(), "seal.pub"))
	uidValidity := crc32.ChecksumIEEE([]byte(strings.TrimSpace(string(seal)))) | 1
	srv := auditimap.New(auditimap.Options{View: view, Viewers: viewers, TLS: tc, Logger: log, UIDValidity: uidValidity})
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	log.Info("serving the clinical record read-only over IMAP with TLS", "listen", l.Addr().String(),
		"messages", len(view.Messages()), "viewers", len(viewers))
	fmt.Fprintf(c.stdout, "Serving the record read-only on %s (IMAP over TLS); stop with Ctrl-C.\n", l.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		srv.Close()
		return nil
	case err := <-errc:
		return err
	}
}
