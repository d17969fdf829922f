package fs

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/snapshot"
)

// mountTest backs up data as resource "r", disk "d", mounts the vault
// and returns the mount directory and the point.
func mountTest(t *testing.T, data []byte, holes [][2]int64) (string, *snapshot.Point) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE tests need root and /dev/fuse: %v", err)
		}
		t.Skip("FUSE tests need root and /dev/fuse")
	}
	v := snapshot.TestVault(t, snapshot.Config{BlockSize: 64 << 10})
	p, err := v.Backup(context.Background(), "r", []snapshot.DiskSource{{Name: "d", Src: &snapshot.MemSource{Data: data, Holes: holes}}}, snapshot.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv, err := Mount(dir, v, MountOptions{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return dir, p
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
