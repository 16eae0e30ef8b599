// Package fsutil holds the few file operations whose durability the relay,
// the archive and the commands rely on, written once: a file is on disk only
// after its data and, for a new name, its folder were fsynced.
package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// SyncDir fsyncs a folder, which makes the names created, renamed or removed
// in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// WriteFileSync writes b to path (created or truncated) and fsyncs the file,
// not its folder: for a file replaced by a rename right after.
func WriteFileSync(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// WriteFileAtomic replaces path with b whole or not at all: written beside
// it, fsynced, renamed over it, and the folder fsynced. A crash leaves the
// old file or the new one, never a mix (and at most a stray path+".tmp").
func WriteFileAtomic(path string, b []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := WriteFileSync(tmp, b, perm); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}
