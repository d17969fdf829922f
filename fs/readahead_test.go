package fs

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/volume"
	"github.com/cairn-backup/cairn/snapshot"
)

const raBlock = 64 << 10

// raDisk backs up data as a point's disk and opens it, with the mount's
// read-ahead of window bytes, as pointDir does.
func raDisk(t *testing.T, data []byte, window int64) (*FS, *snapshot.DiskReader) {
	t.Helper()
	v := snapshot.TestVault(t, snapshot.Config{BlockSize: raBlock})
	p, err := v.Backup(context.Background(), "r", []snapshot.DiskSource{{Name: "d", Src: &snapshot.MemSource{Data: data}}}, snapshot.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := v.OpenDisk(p, "d")
	if err != nil {
		t.Fatal(err)
	}
	fsys := &FS{vault: v, logf: t.Logf, readAhead: window}
	r.SetReadAhead(fsys.readAhead)
	return fsys, r
}

// waitCached waits until every block holding [off, end) of the disk is
// cached, or fails.
func waitCached(t *testing.T, r *snapshot.DiskReader, off, end int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for b := off / raBlock * raBlock; b < end; b += raBlock {
		for !r.Cached(b) {
			if time.Now().After(deadline) {
				t.Fatalf("block at %d (of [%d, %d)) not loaded ahead", b, off, end)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// ext4Image makes an ext4 image of the given size (mkfs.ext4 -d) holding
// one file, "big", of n random bytes; it returns the file's content and
// the image.
func ext4Image(t *testing.T, n int, size string) (content, img []byte) {
	t.Helper()
	content = make([]byte, n)
	rand.New(rand.NewSource(int64(n))).Read(content)
	return content, ext4Of(t, size, map[string][]byte{"big": content})
}

// ext4Of makes an ext4 image of size holding files, written in name
// order (so that ext4 lays them out one after the other).
func ext4Of(t *testing.T, size string, files map[string][]byte) []byte {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mkfs.ext4 missing")
		}
		t.Skip("mkfs.ext4 missing")
	}
	src := t.TempDir()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(src, name), files[name], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "fs.img")
	if out, err := exec.Command(mkfs, "-q", "-F", "-d", src, path, size).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// DISK.raw reads ahead through its disk reader: not for a random reader
// that once lands near its last read, up to the mount's window for a
// sequential one, and not at all when the mount turns it off.
func TestDiskFileReadsAhead(t *testing.T) {
	data := make([]byte, 16<<20)
	rand.New(rand.NewSource(3)).Read(data)
	fsys, r := raDisk(t, data, 1<<20)
	f := newDiskFile(fsys, r)
	read := func(off, n int64) {
		t.Helper()
		buf := make([]byte, n)
		res, errno := f.Read(context.Background(), nil, buf, off)
		if errno != 0 {
			t.Fatalf("read at %d: %v", off, errno)
		}
		if got, _ := res.Bytes(buf); !bytes.Equal(got, data[off:off+n]) {
			t.Fatalf("read at %d: wrong bytes", off)
		}
	}
	cached := func(off, end int64) int {
		n := 0
		for b := off / raBlock * raBlock; b < end; b += raBlock {
			if r.Cached(b) {
				n++
			}
		}
		return n
	}
	read(12<<20, 4096)
	read(12<<20+40<<10, 4096)          // near the last: one in a row
	time.Sleep(100 * time.Millisecond) // time for read-ahead to show, were it queued
	if n := cached(12<<20+raBlock, 13<<20); n != 0 {
		t.Fatalf("%d blocks loaded ahead after one near read", n)
	}
	for off := int64(0); off < 2<<20; off += 128 << 10 {
		read(off, 128<<10)
	}
	waitCached(t, r, 2<<20, 3<<20)
	time.Sleep(100 * time.Millisecond)
	if n := cached(3<<20+raBlock, 4<<20); n != 0 {
		t.Fatalf("%d blocks loaded past the mount's 1 MiB window", n)
	}

	fsys, r = raDisk(t, data, -1)
	f = newDiskFile(fsys, r)
	for off := int64(0); off < 2<<20; off += 128 << 10 {
		read(off, 128<<10)
	}
	time.Sleep(100 * time.Millisecond)
	if n := cached(2<<20, 3<<20); n != 0 {
		t.Fatalf("read-ahead off: %d blocks loaded ahead", n)
	}
}

// A sequential reader of a guest file gets the disk blocks under the
// file's next bytes loaded, as the guest maps them: here with the disk
// reader's own read-ahead off, so only the guest file's can load them.
func TestGuestFileReadsAhead(t *testing.T) {
	content, data := ext4Image(t, 6<<20, "16M")
	fsys, r := raDisk(t, data, 1<<20)
	r.SetReadAhead(-1)
	disk, err := volume.Open(r, r.Size())
	if err != nil {
		t.Fatal(err)
	}
	vol := disk.Volumes[0]
	gfs, err := vol.FS()
	if err != nil {
		t.Fatal(err)
	}
	ino, err := gfs.Lookup(gfs.Root(), "big")
	if err != nil {
		t.Fatal(err)
	}
	gv := &guestVol{fsys: fsys, gfs: gfs, disk: r, vol: vol}
	f := &guestFile{guestNode: guestNode{vol: gv, gi: ino}}
	f.ahead.SetMax(fsys.readAhead)
	const n = 128 << 10
	for off := int64(0); off < 1<<20; off += n {
		buf := make([]byte, n)
		res, errno := f.Read(context.Background(), nil, buf, off)
		if got, _ := res.Bytes(buf); errno != 0 || !bytes.Equal(got, content[off:off+n]) {
			t.Fatalf("read at %d: %v", off, errno)
		}
	}
	exts, err := gfs.(guest.Mapper).MapFile(nil, ino, 1<<20, 1<<20)
	if err != nil || len(exts) == 0 {
		t.Fatalf("map: %v %v", exts, err)
	}
	for _, e := range exts {
		at, k, _, err := vol.DiskExtent(e.Off)
		if err != nil || k < e.Len {
			t.Fatalf("extent %v: %d %v", e, k, err)
		}
		waitCached(t, r, at, at+e.Len)
	}
}

// Through FUSE, the mount's ReadAhead reaches DISK.raw and guest files:
// with the default, blocks well past what the kernel asked for get
// loaded; with -1, none do.
func TestMountReadAheadOption(t *testing.T) {
	needFUSE(t)
	content, data := ext4Image(t, 24<<20, "40M")
	// Where the file lies on the disk.
	r0, err := volume.Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	gfs, err := r0.Volumes[0].FS()
	if err != nil {
		t.Fatal(err)
	}
	ino, err := gfs.Lookup(gfs.Root(), "big")
	if err != nil {
		t.Fatal(err)
	}
	mapper := gfs.(guest.Mapper)
	all, err := mapper.MapFile(nil, ino, 0, int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	var long *guest.Extent // one of at least 7 MiB, for DISK.raw
	for i := range all {
		if all[i].Len >= 7<<20 {
			long = &all[i]
		}
	}
	if long == nil {
		t.Fatalf("no extent of 7 MiB in %v", all)
	}
	// The kernel reads ahead 1 MiB at most: 5 to 7 MiB past a reader's
	// 2 MiB is cairn's read-ahead.
	far, err := mapper.MapFile(nil, ino, 5<<20, 2<<20)
	if err != nil || len(far) == 0 {
		t.Fatalf("map: %v %v", far, err)
	}
	for _, c := range []struct {
		window int64
		guest  bool
		want   bool
	}{{0, false, true}, {-1, false, false}, {0, true, true}, {-1, true, false}} {
		v := snapshot.TestVault(t, snapshot.Config{BlockSize: raBlock})
		p, err := v.Backup(context.Background(), "r", []snapshot.DiskSource{{Name: "d", Src: &snapshot.MemSource{Data: data}}}, snapshot.BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dir := mountWith(t, v, MountOptions{ReadAhead: c.window})
		probe, _ := v.OpenDisk(p, "d")
		// path is read from off for 2 MiB; check lists the disk ranges
		// that read-ahead should then load.
		path, off, check := filepath.Join(dir, "r", p.ID, "d.raw"), long.Off, []guest.Extent{{Off: long.Off + 5<<20, Len: 2 << 20}}
		if c.guest {
			path, off, check = filepath.Join(dir, "r", p.ID, "d", "big"), 0, far
		}
		loaded := func() bool { // some block to check is cached
			for _, e := range check {
				for b := e.Off / raBlock * raBlock; b < e.Off+e.Len; b += raBlock {
					if probe.Cached(b) {
						return true
					}
				}
			}
			return false
		}
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 128<<10)
		for k := int64(0); k < 2<<20; k += int64(len(buf)) {
			if _, err := fh.ReadAt(buf, off+k); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		fh.Close()
		deadline := time.Now().Add(3 * time.Second)
		if !c.want {
			deadline = time.Now().Add(200 * time.Millisecond)
		}
		got := loaded()
		for !got && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
			got = loaded()
		}
		if got != c.want {
			t.Errorf("ReadAhead %d, guest file %v: blocks 5-7 MiB ahead loaded: %v", c.window, c.guest, got)
		}
	}
}

// A guest file loads ahead only its own bytes: the disk reader it reads
// through starts no stream of its own, which would load whatever lies
// on the disk past the file's end (here the next file) for no reader.
func TestGuestFileLoadsNothingPastItsEnd(t *testing.T) {
	needFUSE(t)
	a, b := make([]byte, 4<<20), make([]byte, 8<<20)
	rand.New(rand.NewSource(5)).Read(a)
	rand.New(rand.NewSource(6)).Read(b)
	data := ext4Of(t, "40M", map[string][]byte{"a": a, "b": b})
	r0, err := volume.Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	gfs, err := r0.Volumes[0].FS()
	if err != nil {
		t.Fatal(err)
	}
	extents := func(name string, n int64) []guest.Extent {
		ino, err := gfs.Lookup(gfs.Root(), name)
		if err != nil {
			t.Fatal(err)
		}
		e, err := gfs.(guest.Mapper).MapFile(nil, ino, 0, n)
		if err != nil || len(e) == 0 {
			t.Fatalf("map %s: %v %v", name, e, err)
		}
		return e
	}
	ea, eb := extents("a", int64(len(a))), extents("b", int64(len(b)))
	// The blocks to check: b's, from 2 MiB past a's end on the disk
	// (beyond what the kernel's own read-ahead of a could touch).
	aEnd := ea[len(ea)-1].Off + ea[len(ea)-1].Len
	var check []int64
	for _, e := range eb {
		for off := (e.Off + raBlock - 1) / raBlock * raBlock; off+raBlock <= e.Off+e.Len; off += raBlock {
			if off >= aEnd+2<<20 && off < aEnd+8<<20 {
				check = append(check, off)
			}
		}
	}
	if eb[0].Off < aEnd || eb[0].Off > aEnd+1<<20 || len(check) < 4<<20/raBlock {
		t.Fatalf("b does not follow a on the disk: a %v, b %v", ea, eb)
	}

	v := snapshot.TestVault(t, snapshot.Config{BlockSize: raBlock})
	p, err := v.Backup(context.Background(), "r", []snapshot.DiskSource{{Name: "d", Src: &snapshot.MemSource{Data: data}}}, snapshot.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := mountWith(t, v, MountOptions{})
	got, err := os.ReadFile(filepath.Join(dir, "r", p.ID, "d", "a"))
	if err != nil || !bytes.Equal(got, a) {
		t.Fatalf("read a: %v (equal %v)", err, bytes.Equal(got, a))
	}
	// Past the kernel's own read-ahead (1 MiB) into b, nothing may load.
	probe, _ := v.OpenDisk(p, "d")
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, off := range check {
			if probe.Cached(off) {
				t.Fatalf("reading a loaded b's block at disk offset %d (a ends at %d)", off, aEnd)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}
