package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/archive/auditimap"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/tlsconf"
)

func init() {
	register(&command{
		name: "archive serve-imap",
		args: "--key FILE [--key FILE ...] [--archive DIR] [--listen ADDR] [--passphrase-file FILE ...] " +
			"[--viewer NAME --viewer-password-file FILE] [--tls-cert FILE --tls-key FILE | --tls-dir DIR] [--cache-mb N]",
		summary: "serve the record read-only over IMAP (TLS) to the [[archive.viewer]] logins, or to --viewer",
		run:     runArchiveServeIMAP,
	})
}

// viewFlags are serve-imap's logins and certificate, which an auditor's
// copy (--archive, no configuration) cannot take from [[archive.viewer]]
// and [smtp].
type viewFlags struct {
	viewer, viewerPasswordFile *string
	tlsCert, tlsKey, tlsDir    *string
}

func addViewFlags(fs interface {
	String(name, value, usage string) *string
}) viewFlags {
	return viewFlags{
		viewer:             fs.String("viewer", "auditor", "the login name of the viewer whose password --viewer-password-file holds"),
		viewerPasswordFile: fs.String("viewer-password-file", "", "a file holding the password --viewer logs in with (one line); needed with --archive, where there is no [[archive.viewer]]"),
		tlsCert:            fs.String("tls-cert", "", "the view's TLS certificate (PEM); with --tls-key"),
		tlsKey:             fs.String("tls-key", "", "its private key (PEM)"),
		tlsDir:             fs.String("tls-dir", "", "with --archive and no --tls-cert: where the view keeps a local CA (ca.pem, to import into the mail client once) and a certificate for localhost (default: sealpost/archive-view-tls in the user's configuration folder)"),
	}
}

func runArchiveServeIMAP(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	var keyFile fileList
	fs.Var(&keyFile, "key", "the archive's private key (required; once per key after a change of archive key)")
	listen := fs.String("listen", "127.0.0.1:1993", "address for IMAP over TLS")
	cacheMB := fs.Int("cache-mb", 32, "how many MB of decrypted messages the view keeps for the mail clients that fetch them again (at least 1)")
	var ppFiles fileList
	fs.Var(&ppFiles, "passphrase-file", "a file holding a private key's passphrase (once per passphrase when the keys have different ones; otherwise asked on the terminal)")
	vf := addViewFlags(fs)
	dirFlag := archiveFlag(fs)
	src, err := c.startArchive(fs, args, dirFlag, func() error {
		if len(keyFile) == 0 {
			return usagef("--key is required: the view decrypts the record")
		}
		if (*vf.tlsCert == "") != (*vf.tlsKey == "") {
			return usagef("--tls-cert and --tls-key go together")
		}
		return nil
	})
	if err != nil {
		return err
	}
	viewers, err := viewLogins(src, vf)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(c.stderr, nil))
	if src.cfg != nil {
		log = newLogger(src.cfg, c.stderr)
	}
	key, err := loadArchiveKeys(c, keyFile, ppFiles)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// The view's live heap grows with the archive (about 90 octets a
		// message, in rows without pointers, which cost a collection
		// nothing to mark) while what each record's decryption leaves
		// behind is garbage at once: collecting sooner keeps the peak near
		// the live heap.
		debug.SetGCPercent(20)
	}
	// The view answers as soon as it has read the first messages; the
	// rest fill its mailboxes while it serves, as new records do.
	view, err := archive.OpenViewWith(src.dir, key, archive.ViewOptions{Background: true, BodyCacheBytes: int64(max(*cacheMB, 1)) << 20})
	if err != nil {
		return err
	}
	defer view.Close()
	go func() {
		start := time.Now()
		if err := view.LoadAll(ctx); err != nil && ctx.Err() == nil {
			log.Error("cannot read the whole archive; the view shows what it read", "err", err)
			return
		}
		if ctx.Err() == nil {
			log.Info("the view has read the whole archive", "messages", view.Len(), "seconds", time.Since(start).Round(time.Millisecond).Seconds())
		}
	}()
	tc, caFile, err := viewTLS(src, vf, log)
	if err != nil {
		return err
	}
	// UIDs are record numbers; the validity follows the archive's identity
	// (its seal key), so a different archive never looks like this one.
	seal, _ := os.ReadFile(filepath.Join(src.dir, "seal.pub"))
	uidValidity := crc32.ChecksumIEEE([]byte(strings.TrimSpace(string(seal)))) | 1
	srv := auditimap.New(auditimap.Options{View: view, Viewers: viewers, TLS: tc, Logger: log, UIDValidity: uidValidity})
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	log.Info("serving the clinical record read-only over IMAP with TLS", "listen", l.Addr().String(),
		"messages", view.Len(), "viewers", len(viewers))
	fmt.Fprintf(c.stdout, "Serving the record read-only on %s (IMAP over TLS); stop with Ctrl-C.\n", l.Addr())
	if caFile != "" {
		fmt.Fprintf(c.stdout, "The certificate is signed by the local CA %s: import it into the mail client once (Thunderbird: Settings, Privacy & Security, Certificates, Manage Certificates, Authorities, Import).\n", caFile)
	}
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

// viewLogins are who may log in: the [[archive.viewer]] entries of the
// configuration, and --viewer with the password in --viewer-password-file.
func viewLogins(src *archiveSource, vf viewFlags) ([]auditimap.Viewer, error) {
	var viewers []auditimap.Viewer
	if src.cfg != nil {
		for _, v := range src.cfg.Archive.Viewers {
			viewers = append(viewers, auditimap.Viewer{Username: v.Username, PasswordHash: v.PasswordHash})
		}
	}
	if *vf.viewerPasswordFile != "" {
		pw, err := config.ReadSecret(*vf.viewerPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--viewer-password-file: %w", err)
		}
		if len(pw) < 8 {
			return nil, fmt.Errorf("--viewer-password-file: the password has %d characters; give at least 8", len(pw))
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
		if err != nil {
			return nil, err
		}
		viewers = append(viewers, auditimap.Viewer{Username: *vf.viewer, PasswordHash: string(hash)})
	}
	if len(viewers) == 0 {
		if src.cfg == nil {
			return nil, errors.New("nobody could log in: with --archive there is no [[archive.viewer]]; give --viewer-password-file FILE, a file holding the password to log in with (user name auditor, or --viewer NAME)")
		}
		return nil, errors.New("nobody could log in: no [[archive.viewer]] in the configuration (add one with a password_hash from sealpost passwd) and no --viewer-password-file")
	}
	return viewers, nil
}

// viewTLS is the view's certificate: --tls-cert, else the submission
// certificate of the configuration, else (an auditor's copy) a local CA and
// a certificate for localhost kept outside the archive. caFile is the CA
// to import when the view made it.
func viewTLS(src *archiveSource, vf viewFlags, log *slog.Logger) (tc *tls.Config, caFile string, err error) {
	if *vf.tlsCert != "" {
		tc, err = tlsconf.ServerTLS(*vf.tlsCert, *vf.tlsKey)
		return tc, "", err
	}
	if src.cfg != nil {
		tc, err = serverTLS(src.cfg, log)
		return tc, "", err
	}
	dir := *vf.tlsDir
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return nil, "", fmt.Errorf("no folder for the view's certificate (%w): give --tls-dir DIR or --tls-cert and --tls-key", err)
		}
		dir = filepath.Join(base, "sealpost", "archive-view-tls")
	}
	if err := outsideDir(src.dir, dir); err != nil {
		return nil, "", fmt.Errorf("--tls-dir %s is inside the archive folder: nothing is ever written into it; give another folder", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", err
	}
	certFile, keyFile, err := tlsconf.EnsureLocalCertificate(dir, "localhost", time.Now())
	if err != nil {
		return nil, "", err
	}
	tc, err = tlsconf.ServerTLS(certFile, keyFile)
	return tc, filepath.Join(dir, "ca.pem"), err
}

// outsideDir fails when path is dir or inside it.
func outsideDir(dir, path string) error {
	d, err1 := filepath.Abs(dir)
	p, err2 := filepath.Abs(path)
	if err1 != nil || err2 != nil {
		return errors.Join(err1, err2)
	}
	if rel, err := filepath.Rel(d, p); err == nil && (rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../"))) {
		return fmt.Errorf("%s is inside %s", path, dir)
	}
	return nil
}
