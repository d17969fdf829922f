package volume

import (
	"fmt"
	"path"
	"strings"
	"syscall"

	"github.com/cairn-backup/cairn/fs/guest"
)

// MaxSymlinks bounds the symbolic links one walk follows, as Linux does.
const MaxSymlinks = 40

// ErrLoop: a walk met more than MaxSymlinks symbolic links.
var ErrLoop = fmt.Errorf("too many levels of symbolic links")

// Split splits a disk path into the volume's name and the path inside
// it: "part1/etc/hostname" gives ("part1", "etc/hostname") on a
// partitioned disk, ("", "part1/etc/hostname") on a bare filesystem.
func (d *Disk) Split(p string) (vol, rest string) {
	p = strings.Trim(path.Clean("/"+p), "/")
	if d.Bare {
		return "", p
	}
	vol, rest, _ = strings.Cut(p, "/")
	return vol, rest
}

// Resolve finds the volume and inode a disk path names. The volume's
// root is returned for a path naming the volume alone, and for "" on a
// bare filesystem. A final symbolic link is followed when follow is set.
func (d *Disk) Resolve(p string, follow bool) (*Volume, guest.FS, uint64, error) {
	name, rest := d.Split(p)
	v := d.Volume(name)
	if v == nil {
		return nil, nil, 0, fmt.Errorf("%s: %w", name, ErrNoVolume)
	}
	fsys, err := v.FS()
	if err != nil {
		return v, nil, 0, err
	}
	ino, err := Walk(fsys, rest, follow)
	return v, fsys, ino, err
}

// Walk resolves a slash path relative to the root of fsys, following
// symbolic links on the way (and the last one when follow is set).
func Walk(fsys guest.FS, p string, follow bool) (uint64, error) {
	w := walker{fsys: fsys}
	stack := []uint64{fsys.Root()}
	return w.walk(stack, p, follow)
}

type walker struct {
	fsys  guest.FS
	links int
}

// walk resolves p from the directory on top of stack (the chain of
// directories from the root, for "..").
func (w *walker) walk(stack []uint64, p string, follow bool) (uint64, error) {
	parts := strings.Split(p, "/")
	for i, name := range parts {
		last := i == len(parts)-1
		switch name {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		dir := stack[len(stack)-1]
		ino, err := w.fsys.Lookup(dir, name)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		if last && !follow {
			return ino, nil
		}
		a, err := w.fsys.Stat(ino)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		if a.Mode&syscall.S_IFMT == syscall.S_IFLNK {
			if w.links++; w.links > MaxSymlinks {
				return 0, fmt.Errorf("%s: %w", name, ErrLoop)
			}
			target, err := w.fsys.Readlink(ino)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", name, err)
			}
			from := stack
			if strings.HasPrefix(target, "/") {
				from = stack[:1]
			}
			// Resolve the target from a copy, so ".." in it pops its own
			// chain, then continue with the rest of p from there.
			if rest := strings.Join(parts[i+1:], "/"); rest != "" {
				target += "/" + rest
			}
			return w.walk(append([]uint64(nil), from...), target, follow)
		}
		if !last && a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return 0, fmt.Errorf("%s: %w", name, guest.ErrNotDir)
		}
		stack = append(stack, ino)
	}
	return stack[len(stack)-1], nil
}
