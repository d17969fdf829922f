package fs

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

// needFUSE skips t without root or /dev/fuse, and fails it in CI.
func needFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE tests need root and /dev/fuse: %v", err)
		}
		t.Skip("FUSE tests need root and /dev/fuse")
	}
}

// mountTest backs up data as resource "r", disk "d", mounts the vault
// and returns the mount directory and the point.
func mountTest(t *testing.T, data []byte, holes [][2]int64) (string, *snapshot.Point) {
	t.Helper()
	needFUSE(t)
	v := snapshot.TestVault(t, snapshot.Config{BlockSize: 64 << 10})
	return mountVault(t, v, data, holes)
}

// mountVault backs up data into v as resource "r", disk "d", and mounts v.
func mountVault(t *testing.T, v *snapshot.Vault, data []byte, holes [][2]int64) (string, *snapshot.Point) {
	t.Helper()
	p, err := v.Backup(context.Background(), "r", []snapshot.DiskSource{{Name: "d", Src: &snapshot.MemSource{Data: data, Holes: holes}}}, snapshot.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return mountWith(t, v, MountOptions{}), p
}

// mountWith mounts v with options o and returns the mount directory.
func mountWith(t *testing.T, v *snapshot.Vault, o MountOptions) string {
	t.Helper()
	dir := t.TempDir()
	o.Logf = t.Logf
	srv, err := Mount(dir, v, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return dir
}

// The kernel caches symlinks for good, so "latest" must still move: a
// new point, then its deletion, each show within a second or so.
func TestLatestFollowsNewAndDeletedPoints(t *testing.T) {
	v := snapshot.TestVault(t, snapshot.Config{BlockSize: 64 << 10})
	dir, p1 := mountVault(t, v, []byte("one"), nil)
	latest := filepath.Join(dir, "r", "latest")
	waitLatest := func(want string) {
		t.Helper()
		var got string
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if got, _ = os.Readlink(latest); got == want {
				return
			}
		}
		t.Fatalf("latest -> %q, want %q", got, want)
	}
	waitLatest(p1.ID)
	p2, err := v.Backup(context.Background(), "r", []snapshot.DiskSource{{Name: "d", Src: &snapshot.MemSource{Data: []byte("two")}}}, snapshot.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitLatest(p2.ID)
	if b, err := os.ReadFile(filepath.Join(latest, "d.raw")); err != nil || string(b) != "two" {
		t.Errorf("latest/d.raw = %q %v", b, err)
	}
	if err := v.Delete([]*snapshot.Point{p2}); err != nil {
		t.Fatal(err)
	}
	waitLatest(p1.ID)
}

func TestDiskFileReadsSeeksAndRefusesWrites(t *testing.T) {
	data := make([]byte, 3<<20)
	r := rand.New(rand.NewSource(1))
	r.Read(data[:1<<20])
	r.Read(data[2<<20:])
	dir, p := mountTest(t, data, [][2]int64{{1 << 20, 2 << 20}})
	file := filepath.Join(dir, "r", p.ID, "d.raw")
	got, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read: %v, equal %v", err, bytes.Equal(got, data))
	}
	if l, err := os.Readlink(filepath.Join(dir, "r", "latest")); err != nil || l != p.ID {
		t.Fatalf("latest = %q %v", l, err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if off, err := f.Seek(0, 4); err != nil || off != 1<<20 { // SEEK_HOLE
		t.Errorf("SEEK_HOLE = %d %v", off, err)
	}
	if off, err := f.Seek(1<<20, 3); err != nil || off != 2<<20 { // SEEK_DATA
		t.Errorf("SEEK_DATA = %d %v", off, err)
	}
	var st syscall.Stat_t
	syscall.Stat(file, &st)
	if st.Size != 3<<20 || st.Blocks != 2<<20/512 || st.Ino != inoOf("disk", "r", p.ID, "d") {
		t.Errorf("stat: size %d blocks %d ino %d", st.Size, st.Blocks, st.Ino)
	}
	if err := os.Remove(file); !errors.Is(err, syscall.EROFS) {
		t.Errorf("rm: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "r", "20000101T000000Z")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unknown point: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nosuch")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unknown resource: %v", err)
	}
}

// The mount raises its kernel read-ahead past the 128 KiB default, which
// is all the kernel grants a FUSE mount's MaxReadAhead on its own.
func TestMountRaisesKernelReadAhead(t *testing.T) {
	dir, _ := mountTest(t, make([]byte, 1<<20), nil)
	m, err := mountAt(dir)
	if err != nil || m == nil {
		t.Fatalf("%s in mountinfo: %v %v", dir, m, err)
	}
	dev := m.dev
	b, err := os.ReadFile("/sys/class/bdi/" + dev + "/read_ahead_kb")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(kernelReadAhead>>10) {
		t.Errorf("read_ahead_kb of the mount (%s) is %s, want %d", dev, got, kernelReadAhead>>10)
	}
}

// A disk file holds every guest file whatever its mode, so it is 0400 and
// the mounting user's unless the options share it; write bits are refused.
func TestDiskFileModeAndOwner(t *testing.T) {
	dir, p := mountTest(t, []byte("disk"), nil)
	check := func(dir string, mode, gid uint32) {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, "r", p.ID, "d.raw"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode != syscall.S_IFREG|mode || st.Uid != uint32(os.Geteuid()) || st.Gid != gid {
			t.Errorf("d.raw: mode %o uid %d gid %d, want %o %d %d", st.Mode, st.Uid, st.Gid,
				syscall.S_IFREG|mode, os.Geteuid(), gid)
		}
	}
	check(dir, 0o400, uint32(os.Getegid()))

	v := snapshot.TestVault(t, snapshot.Config{BlockSize: 64 << 10})
	p, err := v.Backup(context.Background(), "r", []snapshot.DiskSource{{Name: "d", Src: &snapshot.MemSource{Data: []byte("disk")}}}, snapshot.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gid := uint32(4242)
	check(mountWith(t, v, MountOptions{DiskMode: 0o440, DiskGid: &gid}), 0o440, 4242)
	if _, err := Mount(t.TempDir(), v, MountOptions{DiskMode: 0o640}); err == nil || !strings.Contains(err.Error(), "only read bits") {
		t.Errorf("mount with disk mode 0640: %v, want a refusal", err)
	}
}
