package fs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// fuseType is the filesystem type of a cairn mount in /proc/self/mountinfo.
const fuseType = "fuse.cairn"

// mountEntry is the line of /proc/self/mountinfo for one mount.
type mountEntry struct {
	dev    string // "major:minor"
	fstype string // fuseType for a cairn mount
	source string // MountOptions.FsName: "cairn:VAULT"
}

// mountAt returns the mount at path from /proc/self/mountinfo (the last
// one there wins, as for lookups), or nil when nothing is mounted there.
func mountAt(path string) (*mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var m *mountEntry
	for _, line := range strings.Split(string(b), "\n") {
		// ID parent dev root mountpoint options [optional...] - fstype source super
		f := strings.Fields(line)
		if len(f) < 5 || unescapeMount(f[4]) != path {
			continue
		}
		m = &mountEntry{dev: f[2]}
		for i := 5; i+2 < len(f); i++ {
			if f[i] == "-" {
				m.fstype, m.source = f[i+1], unescapeMount(f[i+2])
				break
			}
		}
	}
	return m, nil
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// checkFUSE says in one line what keeps this process from mounting, not
// leaving it to a failed mount(2) or fusermount3's own messages. Without
// root, fusermount3 mounts for us, but it opens /dev/fuse as the user.
func checkFUSE() error {
	root := os.Geteuid() == 0
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		var errno syscall.Errno
		errors.As(err, &errno)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return errors.New("no /dev/fuse: load the fuse kernel module (modprobe fuse)")
		case root:
			return fmt.Errorf("no access to /dev/fuse (%v)", errno)
		}
		return fmt.Errorf("no access to /dev/fuse (%v): run as root, or install fuse3 and give this user access to /dev/fuse", errno)
	}
	f.Close()
	if !root {
		if _, err := fusermount(); err != nil {
			return errors.New("fusermount3 is not installed: run as root, or install fuse3")
		}
	}
	return nil
}

// fusermount finds the helper that mounts and unmounts for non-root
// users, where go-fuse looks for it.
func fusermount() (string, error) {
	var err error
	for _, name := range []string{"fusermount3", "fusermount", "/bin/fusermount3", "/bin/fusermount"} {
		var p string
		if p, err = exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", err
}

// checkMountpoint refuses a missing path, a non-directory, and a
// directory with something mounted on it. A cairn mount whose process
// died (kill -9, a crash) is removed first, with a log line: the kernel
// keeps such a mount until someone unmounts it, answering ENOTCONN to
// every request, though stat may still succeed from its attribute cache
// for a while.
func checkMountpoint(path string, logf func(string, ...any)) error {
	m, err := mountAt(path)
	if err != nil {
		return err
	}
	if m != nil && m.fstype == fuseType {
		if !deadMount(path) {
			return fmt.Errorf("mount point %s: already mounted by a running cairn (%s); stop it first (cairn umount %s)", path, m.source, path)
		}
		if err := detach(path); err != nil {
			return fmt.Errorf("%s: a dead cairn mount is left here and removing it failed (%v); run: %s", path, err, detachCommand(path))
		}
		logf("removed the dead mount a killed cairn left at %s (%s)", path, m.source)
		m = nil
	}
	st, err := os.Stat(path)
	if errors.Is(err, syscall.ENOTCONN) {
		return fmt.Errorf("%s: a dead FUSE mount is left here; unmount it first: %s", path, detachCommand(path))
	}
	if err != nil {
		return fmt.Errorf("mount point %s: %w", path, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mount point %s: not a directory", path)
	}
	if m != nil {
		return fmt.Errorf("mount point %s: already mounted (%s %s, busy)", path, m.fstype, m.source)
	}
	return nil
}

// deadMount reports whether the FUSE mount at path has lost its server.
// Opening and reading the directory are requests the kernel cannot
// answer from its caches; a dead mount fails them with ENOTCONN. A
// server that does not answer within seconds is alive but stuck.
func deadMount(path string) bool {
	done := make(chan error, 1)
	go func() {
		f, err := os.Open(path)
		if err == nil {
			_, err = f.Readdirnames(1)
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		return errors.Is(err, syscall.ENOTCONN)
	case <-time.After(5 * time.Second):
		return false
	}
}

// detach unmounts path lazily, so that files some program still holds
// open in the dead mount do not keep it there.
func detach(path string) error {
	if os.Geteuid() == 0 {
		return syscall.Unmount(path, syscall.MNT_DETACH)
	}
	bin, err := fusermount()
	if err != nil {
		return err
	}
	if out, err := exec.Command(bin, "-u", "-z", path).CombinedOutput(); err != nil {
		return fmt.Errorf("%s -u -z: %s", filepath.Base(bin), strings.TrimSpace(string(out)))
	}
	return nil
}

// detachCommand is what the user can run to do what detach does.
func detachCommand(path string) string {
	if os.Geteuid() == 0 {
		return "umount -l " + path
	}
	return "fusermount3 -uz " + path
}

// Unmount detaches the filesystem at mountpoint, a dead one left by a
// killed cairn included; a busy mount is detached lazily so no stale
// mount stays behind.
func Unmount(mountpoint string) error {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	if m, _ := mountAt(abs); m == nil {
		return fmt.Errorf("%s: not mounted", mountpoint)
	}
	if os.Geteuid() != 0 {
		bin, err := fusermount()
		if err != nil {
			return fmt.Errorf("unmount %s: fusermount3 is not installed", mountpoint)
		}
		if runQuiet(bin, "-u", abs) == nil {
			return nil
		}
		if err := detach(abs); err != nil {
			return fmt.Errorf("unmount %s: %v", mountpoint, err)
		}
		return nil
	}
	if err := syscall.Unmount(abs, 0); err != nil {
		if err == syscall.EBUSY {
			return syscall.Unmount(abs, syscall.MNT_DETACH)
		}
		return fmt.Errorf("unmount %s: %w", mountpoint, err)
	}
	return nil
}
