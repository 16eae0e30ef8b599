package status

import (
	"fmt"
	"syscall"
)

// Disk is the free space of the file system a folder is on.
type Disk struct {
	Path  string `json:"path"`
	Free  uint64 `json:"free_bytes"` // what an unprivileged writer may still use
	Total uint64 `json:"total_bytes"`
}

// DiskOf measures the file system dir is on.
func DiskOf(dir string) (*Disk, error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		return nil, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return &Disk{Path: dir, Free: s.Bavail * uint64(s.Bsize), Total: s.Blocks * uint64(s.Bsize)}, nil
}

// lowDisk is free space below which a day's mail with attachments, and
// the archive's copy of it, may no longer fit.
const lowDisk = 2 << 30

// Low says whether the disk is nearly full: under 2 GiB or 5% free.
func (d *Disk) Low() bool { return d.Free < lowDisk || d.Total > 0 && d.Free*20 < d.Total }

// Bytes is a size as a person reads it: "512 MB", "3.2 GB".
func Bytes(n uint64) string {
	switch {
	case n >= 1<<40:
		return fmt.Sprintf("%.1f TB", float64(n)/(1<<40))
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
