package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/tlsconf"
)

// checkDataDirAccess says who can reach data_dir: other users of the
// machine (a folder made 0755 by an admin's mkdir or a container volume),
// and files below it that its owner, the service's user, cannot change (an
// older sealpost's sudo left them root's). It runs after the command's own
// files were handed over.
func checkDataDirAccess(c *cli, cfg *config.Config) []checkResult {
	fi, err := os.Stat(cfg.DataDir)
	if err != nil {
		return nil // the writable check said why
	}
	var out []checkResult
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		out = append(out, checkResult{what: fmt.Sprintf("data_dir %s has mode %04o", cfg.DataDir, perm),
			err: fmt.Errorf("other users of this machine can list the clinical data in it; make it the service's alone: chmod 700 %s", cfg.DataDir), warn: true})
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return out
	}
	c.handOverDataDir()
	strangers, total := filesNotOwnedBy(cfg.DataDir, st.Uid)
	owner := idName(st.Uid, user.LookupId, func(u *user.User) string { return u.Username })
	what := fmt.Sprintf("every file below data_dir belongs to its owner %s", owner)
	if total == 0 {
		return append(out, checkResult{what: what})
	}
	group := idName(st.Gid, user.LookupGroupId, func(g *user.Group) string { return g.Name })
	return append(out, checkResult{what: what, err: fmt.Errorf("%d do not (%s): the service cannot change them; give them back: sudo chown -R %s:%s %s",
		total, strings.Join(strangers, ", "), owner, group, cfg.DataDir)})
}

// filesNotOwnedBy names (up to three, with their owners) the files and
// folders below dir whose owner is not uid, and counts them all.
func filesNotOwnedBy(dir string, uid uint32) (names []string, total int) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSocket != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || st.Uid == uid {
			return nil
		}
		total++
		if len(names) < 3 {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, rel+": "+idName(st.Uid, user.LookupId, func(u *user.User) string { return u.Username }))
		}
		return nil
	})
	return names, total
}

// idName is a user's or group's name, or its number when it has none.
func idName[T any](id uint32, lookup func(string) (T, error), name func(T) string) string {
	s := strconv.FormatUint(uint64(id), 10)
	if v, err := lookup(s); err == nil {
		return name(v)
	}
	return s
}

// checkCertificateEnds says until when the certificates mail clients rely
// on hold, with a warning a month before the end and while a new local CA
// waits for therapists to import it.
func checkCertificateEnds(cfg *config.Config, now time.Time) []checkResult {
	var out []checkResult
	for _, cert := range certificatesInUse(cfg) {
		end, err := tlsconf.CertificateExpiry(cert.path)
		if err != nil {
			continue // not made yet (the first start makes it), or reported above
		}
		what := fmt.Sprintf("%s %s holds until %s", cert.what, cert.path, end.Local().Format(time.DateOnly))
		switch {
		case cert.label == "local_ca_next":
			out = append(out, checkResult{what: what, warn: true,
				err: errors.New("a new local CA waits to take over: give this file to every therapist's mail client now (README, \"For therapists\")")})
		case end.Sub(now) < 30*24*time.Hour:
			out = append(out, checkResult{what: what, warn: true,
				err: errors.New("renew it: sudo sealpost tls renew for sealpost's own (the Debian package's weekly timer does), or where it came from")})
		default:
			out = append(out, checkResult{what: what})
		}
	}
	return out
}
