package fs

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// MountOptions tune a mount. The zero value means "default".
type MountOptions struct {
	// AllowOther lets users other than the mounting one in. They then see
	// guest files as the guest's modes and owners allow, and disk files
	// as DiskMode and DiskGid allow.
	AllowOther bool
	// DiskMode is the permission of the disk files (DISK.raw,
	// DISK/partN.raw); only read bits may be set. Zero means 0400: a disk
	// file holds every guest file, whatever the guest's modes say, so by
	// default only its owner, the mounting user, may read it.
	DiskMode os.FileMode
	// DiskGid is the group of the disk files; nil means the mounting
	// process's effective group.
	DiskGid *uint32
	// ReadAhead is the most bytes kept loaded ahead of a sequential
	// reader (snapshot.ReadAhead); default snapshot.DefaultReadAhead
	// (8 MiB). Negative disables read-ahead.
	ReadAhead int64
	// Logf receives read errors and other events; discarded when nil.
	Logf func(format string, args ...any)
	// FsName is shown as the mount's source in /proc/mounts.
	FsName string
	// Debug logs every FUSE request.
	Debug bool
}

// Mount serves v at mountpoint until the returned server is unmounted.
// As root it mounts directly with MS_RDONLY; otherwise through
// fusermount with "ro".
func Mount(mountpoint string, v Vault, o MountOptions) (*fuse.Server, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, err
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := checkFUSE(); err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	if err := checkMountpoint(abs, o.Logf); err != nil {
		return nil, err
	}
	if o.DiskMode == 0 {
		o.DiskMode = 0o400
	}
	if o.DiskMode&^0o444 != 0 {
		return nil, fmt.Errorf("disk file mode %04o: only read bits (0444) may be set", uint32(o.DiskMode))
	}
	gid := uint32(os.Getegid())
	if o.DiskGid != nil {
		gid = *o.DiskGid
	}
	fsys := &FS{vault: v, logf: o.Logf, mounted: time.Now(), holds: map[uint64]func(){},
		readAhead: o.ReadAhead,
		diskMode:  uint32(o.DiskMode), diskUid: uint32(os.Geteuid()), diskGid: gid}
	root := &rootNode{fsys: fsys}
	zero := time.Duration(0)
	dyn := dynamicTimeout
	opts := &gofs.Options{
		EntryTimeout:    &dyn,
		AttrTimeout:     &dyn,
		NegativeTimeout: &zero, // new points must appear at once
		RootStableAttr:  &gofs.StableAttr{Ino: 1},
		// A guest file of mode 0000 stays 0000; go-fuse would show 0644.
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			FsName:     o.FsName,
			Name:       "cairn",
			AllowOther: o.AllowOther,
			// The kernel's own read-ahead is worth 3.5x on sequential
			// reads; 1 MiB requests start on block boundaries.
			MaxReadAhead: kernelReadAhead,
			MaxWrite:     1 << 20,
			// Replies are always in memory: go-fuse would set up a pipe
			// for every READ reply, find no file to splice from and
			// fall back to writev anyway.
			DisableSplice: true,
			Options:       []string{"default_permissions"},
			// Symlinks never change: guest ones are immutable and each
			// "latest" target gets its own inode. Caching them saves a
			// READLINK on every path walk through "latest".
			EnableSymlinkCaching: true,
			Debug:                o.Debug,
		},
	}
	if os.Geteuid() == 0 {
		opts.DirectMountStrict = true
		opts.DirectMountFlags = syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV
	} else {
		opts.Options = append(opts.Options, "ro")
	}
	if o.Debug {
		opts.Logger = log.New(os.Stderr, "fuse: ", 0)
	}
	srv, err := gofs.Mount(abs, root, opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	if err := raiseKernelReadAhead(abs, kernelReadAhead); err != nil {
		o.Logf("kernel read-ahead stays at its default: %v", err)
	}
	return srv, nil
}

// kernelReadAhead is the read-ahead asked of the kernel, and the largest
// READ it then sends.
const kernelReadAhead = 1 << 20

// raiseKernelReadAhead sets the read-ahead of the mount at path to n
// bytes. The kernel takes a FUSE mount's MaxReadAhead only as a cap below
// the system default (128 KiB), so without this sequential readers get
// 128 KiB READs; with it, 1 MiB ones (cold dd of a 2 GiB disk, paired
// runs: 434-626 MB/s at 128 KiB, 644-758 at 1 MiB). Files opened from
// here on use it. Needs root (sysfs).
func raiseKernelReadAhead(path string, n int) error {
	m, err := mountAt(path)
	if err == nil && m == nil {
		err = fmt.Errorf("%s is not in /proc/self/mountinfo", path)
	}
	if err != nil {
		return err
	}
	return os.WriteFile("/sys/class/bdi/"+m.dev+"/read_ahead_kb", []byte(strconv.Itoa(n>>10)), 0)
}
