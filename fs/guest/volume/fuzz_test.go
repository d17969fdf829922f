package volume

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/fuzzimg"
	"github.com/cairn-backup/cairn/fs/guest/lvm"
	"github.com/cairn-backup/cairn/fs/guest/lvm/lvmtest"
)

// Fuzz inputs are disks in fuzzimg's run-length form. The disk is read
// from the runs without being built, so it may be far larger than the
// input; maxFuzzDisk bounds it.
const maxFuzzDisk = 64 << 20

// segment is a stretch of a fuzz disk: n bytes of fill, or lit.
type segment struct {
	off, n int64
	fill   byte
	lit    []byte
}

type rleDisk struct {
	segs []segment
	size int64
}

func unpackDisk(b []byte) *rleDisk {
	d := &rleDisk{}
	add := func(s segment) {
		if s.n > 0 {
			s.off = d.size
			d.segs = append(d.segs, s)
			d.size += s.n
		}
	}
	fuzzimg.Decode(b, maxFuzzDisk,
		func(n int64, fill byte) { add(segment{n: n, fill: fill}) },
		func(p []byte) { add(segment{n: int64(len(p)), lit: p}) })
	return d
}

func (d *rleDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= d.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), d.size-off))
	i := sort.Search(len(d.segs), func(i int) bool { return d.segs[i].off+d.segs[i].n > off })
	for done := 0; done < n; i++ {
		s := d.segs[i]
		at := off + int64(done) - s.off
		k := int(min(int64(n-done), s.n-at))
		if s.lit != nil {
			copy(p[done:done+k], s.lit[at:])
		} else {
			for j := range k {
				p[done+j] = s.fill
			}
		}
		done += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// fuzzPaths are resolved on every input, on top of the fuzzed one.
var fuzzPaths = []string{"", "part1", "etc/hostname", "lib/x/f", "a/b/up/hostname", "loop1",
	"part1/etc/hostname", "part1/lib/x/f", "part2/README.TXT", "part5/etc/hostname", "part2/sub/a.txt", "README.TXT", "sub/a.txt",
	"vg0-lin/etc/hostname", "vg0-str/lib/x/f", "vg0-str/a/b/up/hostname"}

// exercise opens the disk and resolves paths on it; on success it reads
// what they name. Errors are fine as long as they wrap a known sentinel.
func exercise(t *testing.T, d *rleDisk, extra string) (found int) {
	disk, err := Open(d, d.size)
	if err != nil {
		return 0
	}
	for _, v := range disk.Volumes {
		v.Type()
	}
	buf := make([]byte, 4096)
	for _, p := range append(fuzzPaths, extra) {
		for _, follow := range []bool{false, true} {
			_, fsys, ino, err := disk.Resolve(p, follow)
			if err != nil {
				if !knownErr(err) {
					t.Fatalf("Resolve(%q, %v): unknown error %v", p, follow, err)
				}
				continue
			}
			found++
			a, err := fsys.Stat(ino)
			if err != nil {
				continue
			}
			switch a.Mode & syscall.S_IFMT {
			case syscall.S_IFREG:
				fsys.ReadAt(ino, buf, 0)
				fsys.ReadAt(ino, buf, int64(a.Size)-100)
				if m, ok := fsys.(guest.Mapper); ok {
					m.MapFile(nil, ino, 0, 1<<20)
				}
				if ds, ok := fsys.(guest.DataSeeker); ok {
					if s, e, err := ds.NextData(ino, 0); err == nil && (s < 0 || e < s || uint64(e) > a.Size) {
						t.Fatalf("NextData of %q: [%d, %d) in %d bytes", p, s, e, a.Size)
					}
				}
			case syscall.S_IFDIR:
				fsys.ReadDir(ino)
			case syscall.S_IFLNK:
				fsys.Readlink(ino)
			}
			fsys.ListXattr(ino)
		}
	}
	return found
}

func knownErr(err error) bool {
	for _, s := range []error{guest.ErrNotFound, guest.ErrNotDir, guest.ErrIsDir, guest.ErrNotSymlink,
		guest.ErrCorrupt, guest.ErrUnknown, ErrNoVolume, ErrLoop, io.EOF, io.ErrUnexpectedEOF,
		lvm.ErrCorrupt, lvm.ErrMissingPV, lvm.ErrUnsupported} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzResolve opens fuzzed disks (partition tables, ext2/3/4 and FAT)
// and resolves paths on them: no panic, no hang, no unknown error. Run
// it with -fuzzminimizetime 3s: minimizing the seeds' new coverage for
// the default 60 s leaves no time to fuzz, with no progress shown.
// VOLUME_FUZZ_WATCHDOG=1 turns an input slower than 3 s into a crash.
func FuzzResolve(f *testing.F) {
	f.Fuzz(func(t *testing.T, packed []byte, p string) {
		if os.Getenv("VOLUME_FUZZ_WATCHDOG") != "" {
			tm := time.AfterFunc(3*time.Second, func() { panic("slow input") })
			defer tm.Stop()
		}
		exercise(t, unpackDisk(packed), p)
	})
}

var updateSeeds = flag.Bool("volume.update-seeds", false, "rewrite testdata/fuzz/FuzzResolve seeds")

// TestFuzzSeeds builds the seed disks (bare ext2 and ext4, FAT12, MBR
// and GPT disks holding both), checks that paths resolve on each, and
// with -volume.update-seeds writes them as the FuzzResolve corpus.
func TestFuzzSeeds(t *testing.T) {
	for name, img := range seedDisks(t) {
		packed := fuzzimg.Pack(img)
		if len(packed) > 20<<10 {
			t.Errorf("%s: seed of %d bytes", name, len(packed))
		}
		d := unpackDisk(packed)
		if d.size != int64(len(img)) {
			t.Fatalf("%s: unpacked %d bytes of %d", name, d.size, len(img))
		}
		got := make([]byte, len(img))
		if n, err := d.ReadAt(got, 0); n != len(img) || err != nil || !bytes.Equal(got, img) {
			t.Fatalf("%s: unpacked disk differs (%d, %v)", name, n, err)
		}
		found := exercise(t, d, "")
		t.Logf("%s: %d bytes packed, %d paths resolve", name, len(packed), found)
		if found < 4 {
			t.Errorf("%s: only %d paths resolve", name, found)
		}
		if *updateSeeds {
			dir := filepath.Join("testdata", "fuzz", "FuzzResolve")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nstring(%q)\n", packed, "a/b/abs")
			if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// seedDisks builds tiny disks with mkfs, mcopy, sfdisk and sgdisk.
func seedDisks(t *testing.T) map[string][]byte {
	needTool(t, "mkfs.ext2", "mkfs.ext4", "mkfs.vfat", "mcopy", "sfdisk", "sgdisk")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for _, d := range []string{"etc", "usr/lib/x", "a/b"} {
		os.MkdirAll(filepath.Join(tree, d), 0o755)
	}
	os.WriteFile(filepath.Join(tree, "etc/hostname"), []byte("web01\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "usr/lib/x/f"), bytes.Repeat([]byte("deep\n"), 300), 0o644)
	os.Symlink("usr/lib", filepath.Join(tree, "lib"))
	os.Symlink("/etc/hostname", filepath.Join(tree, "a/b/abs"))
	os.Symlink("../../etc", filepath.Join(tree, "a/b/up"))
	os.Symlink("loop2", filepath.Join(tree, "loop1"))
	os.Symlink("loop1", filepath.Join(tree, "loop2"))
	ext2img := filepath.Join(dir, "ext2.img")
	run(t, "mkfs.ext2", "-q", "-F", "-b", "1024", "-N", "32", "-d", tree, ext2img, "64K")
	ext4img := filepath.Join(dir, "ext4.img")
	run(t, "mkfs.ext4", "-q", "-F", "-b", "1024", "-N", "32", "-O", "^has_journal", "-d", tree, ext4img, "128K")
	fatimg := filepath.Join(dir, "fat.img")
	run(t, "mkfs.vfat", "-F", "12", "-r", "16", "-f", "1", "-s", "1", "-C", fatimg, "64")
	os.MkdirAll(filepath.Join(dir, "fat", "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "fat", "README.TXT"), []byte("fat\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "fat", "sub", "a.txt"), []byte("a\n"), 0o644)
	run(t, "mcopy", "-s", "-i", fatimg, filepath.Join(dir, "fat", "README.TXT"), filepath.Join(dir, "fat", "sub"), "::/")
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	place := func(disk []byte, img string, sector int) {
		copy(disk[sector*512:], read(img))
	}
	seeds := map[string][]byte{"ext2": read(ext2img), "ext4": read(ext4img), "fat12": read(fatimg)}
	// MBR: ext2, FAT12, then an extended partition with ext2 as part5.
	mbr := filepath.Join(dir, "mbr.img")
	os.WriteFile(mbr, make([]byte, 480*512), 0o644)
	layout := "label: dos\nstart=2, size=128, type=83\nstart=130, size=128, type=1\n" +
		"start=258, size=220, type=5\nstart=260, size=128, type=83\n"
	sfdisk := exec.Command("sfdisk", "-q", mbr)
	sfdisk.Stdin = strings.NewReader(layout)
	if out, err := sfdisk.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	disk := read(mbr)
	place(disk, ext2img, 2)
	place(disk, fatimg, 130)
	place(disk, ext2img, 260)
	seeds["mbr"] = disk
	// GPT: ext4 and FAT12.
	gpt := filepath.Join(dir, "gpt.img")
	os.WriteFile(gpt, make([]byte, 500*512), 0o644)
	run(t, "sgdisk", "-a", "1", "-n1:34:+128K", "-n2:0:+64K", "-t2:ef00", gpt)
	disk = read(gpt)
	place(disk, ext4img, 34)
	place(disk, fatimg, 34+256)
	seeds["gpt"] = disk
	// A whole-disk PV: ext2 in a linear LV, ext4 in a striped one.
	pv := lvmtest.PV{ID: lvmtest.ID("fuzz-pv"), Device: "/dev/vdb", DevSize: 512 << 10, PEStart: 64 << 10, PECount: 7}
	vg := lvmtest.VG{Name: "vg0", ID: lvmtest.ID("fuzz-vg"), Seqno: 1, ExtentSize: 64 << 10, PVs: []lvmtest.PV{pv},
		LVs: []lvmtest.LV{
			{Name: "lin", Segments: []lvmtest.Segment{{Count: 1, Stripes: []lvmtest.Stripe{{Extent: 0}}}}},
			{Name: "str", Segments: []lvmtest.Segment{{Count: 2, Stripes: []lvmtest.Stripe{{Extent: 1}}}}},
		}}
	lvmDisk := &memDisk{b: make([]byte, 512<<10)}
	if err := vg.WriteAll([]io.WriterAt{lvmDisk}); err != nil {
		t.Fatal(err)
	}
	copy(lvmDisk.b[64<<10:], read(ext2img))
	copy(lvmDisk.b[128<<10:], read(ext4img))
	seeds["lvm"] = lvmDisk.b
	return seeds
}

// memDisk is a disk image being written in memory.
type memDisk struct{ b []byte }

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(m.b[off:], p), nil }
