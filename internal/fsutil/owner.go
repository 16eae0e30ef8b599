package fsutil

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
)

// An admin runs commands with sudo in a data_dir that belongs to the
// service's user. Whatever root makes or replaces there must end up that
// user's, or the service can no longer open it ("attempt to write a readonly
// database"). Every command and package that writes below data_dir hands its
// files over through the two functions below, so there is one rule: below a
// folder owned by someone other than root, root leaves nothing of its own.
//
// The service's user can change data_dir while root works in it, so files
// are opened without following a final symlink, through an os.Root (no path
// leads out of the folder), and changed through the open descriptor; a file
// with several hard links is left alone, since one of its names may be
// outside.

// ServiceOwner is the user and group files below a folder must belong to.
type ServiceOwner struct {
	UID, GID int
	Name     string // the user's name, or its number when it has none
}

// ForeignOwner returns dir's owner when this process runs as root and dir
// belongs to another user: then what root writes below dir must be handed
// over. ok is false otherwise (not root, dir missing, dir root's own).
func ForeignOwner(dir string) (owner ServiceOwner, ok bool) {
	if os.Geteuid() != 0 {
		return ServiceOwner{}, false
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return ServiceOwner{}, false
	}
	st, isUnix := fi.Sys().(*syscall.Stat_t)
	if !isUnix || st.Uid == 0 {
		return ServiceOwner{}, false
	}
	return ServiceOwner{UID: int(st.Uid), GID: int(st.Gid), Name: userName(st.Uid)}, true
}

// KeepOwner gives path, which root just made or replaced below dir, dir's
// owner (see ForeignOwner); nothing happens when that is not needed.
func KeepOwner(path, dir string) error {
	owner, ok := ForeignOwner(dir)
	if !ok {
		return nil
	}
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("hand %s over to %s: not below %s", path, owner.Name, dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	_, err = handOver(root, rel, owner, time.Time{})
	return err
}

// KeepOwnerBelow hands every file and folder below dir that root owns and
// that was made or changed since then to dir's owner (see ForeignOwner), and
// returns how many it changed. It is what every command run as root does
// last, so that nothing it, or a library beneath it, made in data_dir stays
// root's. Older files of root's are not this command's doing, and a folder
// that is not the service's (an auditor's copy) is not written to at all.
func KeepOwnerBelow(dir string, since time.Time) (int, error) {
	owner, ok := ForeignOwner(dir)
	if !ok {
		return 0, nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	changed := 0
	var problems []error
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				problems = append(problems, err)
			}
			return nil
		}
		if p == "." || d.Type()&fs.ModeSymlink != 0 || (!d.IsDir() && !d.Type().IsRegular()) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, isUnix := info.Sys().(*syscall.Stat_t); !isUnix || st.Uid != 0 || changedAt(st).Before(since) {
			return nil
		}
		switch did, err := handOver(root, p, owner, since); {
		case did:
			changed++
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			problems = append(problems, err)
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err)
	}
	return changed, errors.Join(problems...)
}

// handOver gives rel (below root) to owner if root owns it and changed it
// since then, and says whether it did.
func handOver(root *os.Root, rel string, owner ServiceOwner, since time.Time) (bool, error) {
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENXIO) {
		return false, nil // a symlink, or a socket: nothing root made for the service
	}
	if err != nil {
		return false, fmt.Errorf("hand %s over to %s: %w", filepath.Join(root.Name(), rel), owner.Name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	st, isUnix := fi.Sys().(*syscall.Stat_t)
	if !isUnix || st.Uid != 0 || (fi.Mode().IsRegular() && st.Nlink > 1) || changedAt(st).Before(since) {
		return false, nil
	}
	if err := f.Chown(owner.UID, owner.GID); err != nil {
		return false, fmt.Errorf("hand %s over to %s: %w", filepath.Join(root.Name(), rel), owner.Name, err)
	}
	return true, nil
}

// changedAt is when a file's inode last changed (made, written, chmod).
func changedAt(st *syscall.Stat_t) time.Time { return time.Unix(st.Ctim.Unix()) }

// userName is uid's name; its number when it has none.
func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

// CreatePrivate makes path an empty file only its owner may read (0600)
// unless it exists, and takes group and other permissions away from one that
// exists: for databases that the library opening them would create world
// readable, and whose companion files (SQLite's -wal and -shm) copy its mode.
func CreatePrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(fi.Mode().Perm() &^ 0o077); err != nil {
			return fmt.Errorf("make %s private: %w", path, err)
		}
	}
	return nil
}
