package integration

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gtManyEntries is the size of the big directory. mkfs.ext4 -d needs
// about 3.5 s for 5,000 empty files but 3 min 25 s for 50,000 (its
// directory insertion is quadratic; debugfs "write" is no faster: 19 s
// for 20,000), so these trees, built four times, use 5,000;
// TestGuestHugeDirectory builds one 50,000-entry directory once.
func gtManyEntries() int {
	if n, err := strconv.Atoi(os.Getenv("CAIRN_GUEST_ENTRIES")); err == nil && n > 0 {
		return n
	}
	return 5000
}

// gtBigSize is the sparse file over 4 GiB: a hole, then data at its end.
const gtBigSize = 4<<30 + 1<<20

// gtTree builds the source tree every ext disk is made from: real files,
// fast and slow symlinks, hard links, sparse files, xattrs, odd modes and
// owners, special files and a big directory. Returns its path.
func gtTree(t *testing.T, dir string, many int) string {
	t.Helper()
	root := filepath.Join(dir, "tree")
	sourceTree(t, filepath.Join(root, "src"), 3<<20)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(rel string) string { return filepath.Join(root, rel) }
	must(os.MkdirAll(p("etc"), 0o755))
	must(os.WriteFile(p("etc/hostname"), []byte("web01\n"), 0o644))
	// Hard links: three names, one inode.
	must(os.MkdirAll(p("hard"), 0o755))
	must(os.Link(p("etc/hostname"), p("hard/one")))
	must(os.Link(p("etc/hostname"), p("hard/two")))
	// Fast (in the inode) and slow (in a block) symlinks, absolute and
	// relative, and one dangling.
	must(os.Symlink("../etc/hostname", p("hard/fast")))
	slow := strings.Repeat("long-directory-name/", 10) + "target"
	must(os.Symlink(slow, p("etc/slow")))
	must(os.Symlink("/etc/passwd", p("etc/abs")))
	// Sparse files: scattered data in a hole, and one past 4 GiB.
	f, err := os.Create(p("sparse"))
	must(err)
	r := rand.New(rand.NewSource(1))
	for _, off := range []int64{0, 3 << 20, 9<<20 + 123} {
		buf := make([]byte, 70_000)
		r.Read(buf)
		_, err := f.WriteAt(buf, off)
		must(err)
	}
	must(f.Truncate(12 << 20))
	must(f.Close())
	// Extended attributes, one small, one large.
	sh(t, "setfattr", "-n", "user.color", "-v", "blue", p("etc/hostname"))
	sh(t, "setfattr", "-n", "user.big", "-v", "0x"+strings.Repeat("ab", 900), p("sparse"))
	// Odd modes and owners.
	must(os.MkdirAll(p("modes/tmp"), 0o755))
	for name, m := range map[string]uint32{"setuid": 0o4755, "private": 0o640, "none": 0, "tmp": 0o1777} {
		if name != "tmp" {
			must(os.WriteFile(p("modes/"+name), nil, 0o644))
		}
		must(syscall.Chmod(p("modes/"+name), m))
	}
	must(os.WriteFile(p("modes/owned"), []byte("owned\n"), 0o600))
	must(os.Lchown(p("modes/owned"), 1234, 5678))
	must(os.Lchown(p("modes/tmp"), 1234, 5678))
	// Special files, kept in one folder that diff skips.
	must(os.MkdirAll(p("dev"), 0o755))
	must(syscall.Mknod(p("dev/null"), syscall.S_IFCHR|0o666, int((1<<8)|3)))
	must(syscall.Mknod(p("dev/sda1"), syscall.S_IFBLK|0o660, int((8<<8)|1)))
	must(syscall.Mkfifo(p("dev/fifo"), 0o644))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p("dev/sock"), Net: "unix"})
	must(err)
	l.SetUnlinkOnClose(false)
	l.Close()
	// A big directory (htree on ext4).
	must(os.MkdirAll(p("many"), 0o755))
	for i := 0; i < many; i++ {
		must(os.WriteFile(p(fmt.Sprintf("many/file-%06d", i)), nil, 0o644))
	}
	// Fixed times, so the comparison sees the guest's times, not now.
	when := time.Date(2024, 2, 29, 12, 34, 56, 0, time.UTC)
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 && !strings.HasPrefix(path, p("many")+"/") {
			os.Chtimes(path, when, when)
		}
		return nil
	})
	return root
}

// gtBig adds the sparse file over 4 GiB to tree. Only the bare ext4
// disk gets it: diff reads its hole as 4 GiB of zeros.
func gtBig(t *testing.T, tree string) {
	t.Helper()
	f, err := os.Create(filepath.Join(tree, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tail := make([]byte, 300_000)
	rand.New(rand.NewSource(2)).Read(tail)
	if _, err := f.WriteAt(tail, gtBigSize-int64(len(tail))-1000); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(gtBigSize); err != nil {
		t.Fatal(err)
	}
	when := time.Date(2024, 2, 29, 12, 34, 56, 0, time.UTC)
	os.Chtimes(f.Name(), when, when)
	os.Chtimes(tree, when, when)
}

// gtPlace writes filesystem image fsImg into disk image disk at offset.
func gtPlace(t *testing.T, fsImg, disk string, offset int64) {
	t.Helper()
	sh(t, "dd", "if="+fsImg, "of="+disk, "bs=1M", fmt.Sprintf("seek=%d", offset>>20), "conv=notrunc,sparse", "status=none")
}

// gtFAT builds a FAT image of the given size in MiB holding a few files
// with long names, and returns the image and the source tree.
func gtFAT(t *testing.T, dir, name string, mib int, fatBits string) (string, string) {
	t.Helper()
	tree := filepath.Join(dir, name+"-tree")
	os.MkdirAll(filepath.Join(tree, "EFI", "BOOT"), 0o755)
	os.MkdirAll(filepath.Join(tree, "A directory with a long name"), 0o755)
	os.WriteFile(filepath.Join(tree, "EFI", "BOOT", "BOOTX64.EFI"), bytes.Repeat([]byte("efi!"), 20_000), 0o644)
	os.WriteFile(filepath.Join(tree, "A directory with a long name", "Ünïcode file name.txt"), []byte("hello fat\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "readme.txt"), []byte("short\n"), 0o644)
	img := filepath.Join(dir, name+".img")
	sh(t, "mkfs.vfat", "-F", fatBits, "-n", "ESP", "-C", img, strconv.Itoa(mib<<10))
	ents, _ := os.ReadDir(tree)
	args := []string{"-s", "-m", "-i", img}
	for _, e := range ents {
		args = append(args, filepath.Join(tree, e.Name()))
	}
	sh(t, "mcopy", append(args, "::/")...)
	return img, tree
}

// gtCompare checks every file of src against the same path under dst:
// type, mode, owner, size and mtime (when times), link target, device
// number; file content is left to diff -r.
func gtCompare(t *testing.T, src, dst string, skip string) {
	t.Helper()
	bad := 0
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || bad > 10 {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." || rel == skip {
			return nil
		}
		var a, b syscall.Stat_t
		if err := syscall.Lstat(p, &a); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Lstat(filepath.Join(dst, rel), &b); err != nil {
			t.Errorf("%s: %v", rel, err)
			bad++
			return nil
		}
		isDir := a.Mode&syscall.S_IFMT == syscall.S_IFDIR
		switch {
		case a.Mode != b.Mode:
			t.Errorf("%s: mode %o, want %o", rel, b.Mode, a.Mode)
		case (a.Uid != b.Uid || a.Gid != b.Gid):
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, b.Uid, b.Gid, a.Uid, a.Gid)
		case !isDir && a.Size != b.Size:
			t.Errorf("%s: size %d, want %d", rel, b.Size, a.Size)
		case !isDir && a.Mtim.Sec != b.Mtim.Sec:
			t.Errorf("%s: mtime %d, want %d", rel, b.Mtim.Sec, a.Mtim.Sec)
		case a.Rdev != b.Rdev:
			t.Errorf("%s: rdev %x, want %x", rel, b.Rdev, a.Rdev)
		default:
			if a.Mode&syscall.S_IFMT == syscall.S_IFLNK {
				la, _ := os.Readlink(p)
				lb, err := os.Readlink(filepath.Join(dst, rel))
				if la != lb {
					t.Errorf("%s: link -> %q (%v), want %q", rel, lb, err, la)
				}
			}
			return nil
		}
		bad++
		return nil
	})
}

// gtSameSparse compares two local files of equal size where either has
// data (SEEK_DATA/SEEK_HOLE); where both have holes both read as zeros.
func gtSameSparse(t *testing.T, a, b string) {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	sa, _ := fa.Stat()
	if sb, _ := fb.Stat(); sa.Size() != sb.Size() {
		t.Fatalf("%s: %d bytes, %s: %d", a, sa.Size(), b, sb.Size())
	}
	size := sa.Size()
	// next returns the first data range of f at or after off.
	next := func(f *os.File, off int64) (int64, int64) {
		const seekData, seekHole = 3, 4
		s, err := f.Seek(off, seekData)
		if err != nil { // ENXIO: no data after off
			return size, size
		}
		e, err := f.Seek(s, seekHole)
		if err != nil {
			t.Fatal(err)
		}
		return s, e
	}
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < size; {
		s1, e1 := next(fa, off)
		s2, e2 := next(fb, off)
		start, end := min(s1, s2), min(e1, e2)
		if s1 > start {
			end = min(end, s1) // b has data where a's hole ends at s1
		}
		if s2 > start {
			end = min(end, s2)
		}
		for p := start; p < end; p += int64(len(ba)) {
			n := int(min(int64(len(ba)), end-p))
			fa.ReadAt(ba[:n], p)
			fb.ReadAt(bb[:n], p)
			if !bytes.Equal(ba[:n], bb[:n]) {
				t.Fatalf("%s and %s differ in [%d, %d)", a, b, p, p+int64(n))
			}
		}
		off = max(end, off+1)
	}
}

// gtRandomReads compares reads at random offsets of a file in the mount
// with its source.
func gtRandomReads(t *testing.T, src, mnt string, seed int64, n int) {
	t.Helper()
	a, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st, _ := a.Stat()
	size := st.Size()
	r := rand.New(rand.NewSource(seed))
	ba, bb := make([]byte, 200_000), make([]byte, 200_000)
	for i := 0; i < n; i++ {
		off := r.Int63n(size)
		if i%2 == 0 && size > 1<<20 { // near the data of sparse files
			off = max(0, size-int64(r.Intn(1<<20)))
		}
		l := 1 + r.Intn(len(ba))
		na, _ := a.ReadAt(ba[:l], off)
		nb, _ := b.ReadAt(bb[:l], off)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			t.Fatalf("%s: read of %d at %d: %d bytes differ from source (%d)", mnt, l, off, nb, na)
		}
	}
}

// TestGuestFiles backs up ext2/3/4 and FAT filesystems, bare and inside
// GPT and MBR (extended + logical) partition tables, mounts them, copies
// them out with cp -a and compares with the source trees; then checks
// random reads, xattrs, hard links, special files, partition raw files,
// show, ls and cat.
func TestGuestFiles(t *testing.T) {
	needTool(t, "mkfs.ext4", "mkfs.ext2", "mkfs.ext3", "mkfs.vfat", "mcopy", "sgdisk", "sfdisk",
		"setfattr", "getfattr", "diff", "cp", "dd", "cmp")
	needFUSE(t)
	start := time.Now()
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	tree := gtTree(t, dir, gtManyEntries())
	t.Logf("tree built in %v", time.Since(start).Round(time.Millisecond))

	mkfs := func(kind, name, size string) string {
		img := filepath.Join(dir, name)
		sh(t, "mkfs."+kind, "-q", "-F", "-d", tree, img, size)
		return img
	}
	// vda: GPT with ext4, FAT32 (EFI) and swap.
	ext4Part := mkfs("ext4", "p1.img", "150M")
	fat32, fat32Tree := gtFAT(t, dir, "esp", 40, "32")
	vda := createSized(t, filepath.Join(dir, "vda.img"), 256<<20)
	sh(t, "sgdisk", "-n1:1M:+150M", "-t1:8300", "-c1:root", "-n2:0:+40M", "-t2:ef00", "-c2:EFI system",
		"-n3:0:0", "-t3:8200", vda)
	gtPlace(t, ext4Part, vda, 1<<20)
	gtPlace(t, fat32, vda, 151<<20)
	// vdc: MBR with ext2 primary, then an extended partition holding ext3
	// and FAT16 logical partitions.
	ext2 := mkfs("ext2", "p-ext2.img", "150M")
	ext3 := mkfs("ext3", "p-ext3.img", "150M")
	fat16, fat16Tree := gtFAT(t, dir, "fat16", 20, "16")
	vdc := createSized(t, filepath.Join(dir, "vdc.img"), 400<<20)
	layout := "label: dos\n" +
		"start=1MiB, size=150MiB, type=83\n" +
		"start=152MiB, size=240MiB, type=5\n" +
		"start=153MiB, size=150MiB, type=83\n" +
		"start=304MiB, size=20MiB, type=6\n"
	execInput(t, layout, "sfdisk", "-q", vdc)
	gtPlace(t, ext2, vdc, 1<<20)
	gtPlace(t, ext3, vdc, 153<<20)
	gtPlace(t, fat16, vdc, 304<<20)
	// vdb: a bare ext4 filesystem, with the file over 4 GiB.
	gtBig(t, tree)
	vdb := mkfs("ext4", "vdb.img", "160M")
	t.Logf("images built at %v", time.Since(start).Round(time.Millisecond))

	mustCairn(t, vault, "init")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "web01", "vda="+vda, "vdb="+vdb, "vdc="+vdc))
	id := strings.TrimPrefix(point, "web01@")
	t.Logf("backed up at %v", time.Since(start).Round(time.Millisecond))

	t.Run("show", func(t *testing.T) {
		var v struct {
			Disks []struct {
				Name       string `json:"name"`
				Table      string `json:"partition_table"`
				Filesystem string `json:"filesystem"`
				Partitions []struct {
					Name, Type, Filesystem string
				} `json:"partitions"`
			} `json:"disks"`
		}
		mustJSON(t, mustCairn(t, vault, "show", "--json", point), &v)
		got := ""
		for _, d := range v.Disks {
			got += fmt.Sprintf("%s %s %s:", d.Name, d.Table, d.Filesystem)
			for _, p := range d.Partitions {
				got += fmt.Sprintf(" %s=%s", p.Name, p.Filesystem)
			}
			got += "\n"
		}
		want := "vda gpt : part1=ext4 part2=FAT32 part3=\n" +
			"vdb  ext4:\n" +
			"vdc mbr : part1=ext2 part2= part5=ext3 part6=FAT16\n"
		if got != want {
			t.Errorf("show --json partitions:\n%s\nwant:\n%s", got, want)
		}
		text := mustCairn(t, vault, "show", point)
		for _, s := range []string{"Linux swap", "not readable", "EFI System", "extended"} {
			if !strings.Contains(text, s) {
				t.Errorf("show does not mention %q:\n%s", s, text)
			}
		}
	})

	m := startMount(t, vault)
	pt := filepath.Join(m.dir, "web01", id)
	ext := map[string]string{ // mount folder of each ext copy of tree
		"bare ext4": filepath.Join(pt, "vdb"),
		"gpt ext4":  filepath.Join(pt, "vda", "part1"),
		"mbr ext2":  filepath.Join(pt, "vdc", "part1"),
		"mbr ext3":  filepath.Join(pt, "vdc", "part5"),
	}
	for name, root := range ext {
		t.Run("cp -a "+name, func(t *testing.T) {
			t0 := time.Now()
			out := filepath.Join(dir, "out-"+strings.ReplaceAll(name, " ", "-"))
			sh(t, "cp", "-a", root, out)
			skip := "big"
			// diff would read big's hole as 4 GiB of zeros, twice (20 s):
			// gtSameSparse compares it where either copy has data.
			diff := []string{"-r", "--no-dereference", "-x", "lost+found", "-x", "dev", "-x", "big"}
			sh(t, "diff", append(diff, tree, out)...)
			if name == "bare ext4" {
				skip = ""
				gtSameSparse(t, filepath.Join(tree, "big"), filepath.Join(out, "big"))
			}
			gtCompare(t, tree, root, skip)
			gtCompare(t, tree, out, skip)
			t.Logf("cp -a, diff and stat in %v", time.Since(t0).Round(time.Millisecond))
			os.RemoveAll(out)
		})
	}
	fats := map[string][2]string{
		"gpt FAT32": {filepath.Join(pt, "vda", "part2"), fat32Tree},
		"mbr FAT16": {filepath.Join(pt, "vdc", "part6"), fat16Tree},
	}
	for name, c := range fats {
		t.Run("cp -a "+name, func(t *testing.T) {
			out := filepath.Join(dir, "out-"+strings.ReplaceAll(name, " ", "-"))
			sh(t, "cp", "-r", c[0], out)
			sh(t, "diff", "-r", c[1], out)
		})
	}

	t.Run("sparse copy", func(t *testing.T) {
		// Guest files answer SEEK_DATA/SEEK_HOLE: the copy skips the
		// holes and keeps them.
		for _, name := range []string{"sparse", "big"} {
			out := filepath.Join(dir, "sparse-copy-"+name)
			sh(t, "cp", "--sparse=always", filepath.Join(ext["bare ext4"], name), out)
			var a, b syscall.Stat_t
			syscall.Stat(filepath.Join(tree, name), &a)
			syscall.Stat(out, &b)
			if b.Size != a.Size || b.Blocks > a.Blocks+64 {
				t.Errorf("%s: copy of %d bytes in %d blocks, source %d bytes in %d blocks", name, b.Size, b.Blocks, a.Size, a.Blocks)
			}
			gtSameSparse(t, filepath.Join(tree, name), out)
			os.Remove(out)
		}
	})

	t.Run("random reads", func(t *testing.T) {
		gtRandomReads(t, filepath.Join(tree, "big"), filepath.Join(ext["bare ext4"], "big"), 9, 100)
		for i, rel := range []string{"sparse", "src/go/build/build.go"} {
			if _, err := os.Stat(filepath.Join(tree, rel)); err != nil {
				continue
			}
			for _, root := range ext {
				gtRandomReads(t, filepath.Join(tree, rel), filepath.Join(root, rel), int64(i), 100)
			}
		}
	})

	t.Run("hard links and specials", func(t *testing.T) {
		root := ext["gpt ext4"]
		var a, b, c syscall.Stat_t
		syscall.Stat(filepath.Join(root, "etc/hostname"), &a)
		syscall.Stat(filepath.Join(root, "hard/one"), &b)
		syscall.Stat(filepath.Join(root, "hard/two"), &c)
		if a.Ino != b.Ino || a.Ino != c.Ino || a.Nlink != 3 {
			t.Errorf("hard links: ino %d %d %d nlink %d", a.Ino, b.Ino, c.Ino, a.Nlink)
		}
		var other syscall.Stat_t
		syscall.Stat(filepath.Join(ext["bare ext4"], "etc/hostname"), &other)
		if other.Ino == a.Ino {
			t.Errorf("the same file on two disks shares st_ino %d", a.Ino)
		}
		for name, typ := range map[string]uint32{"null": syscall.S_IFCHR, "sda1": syscall.S_IFBLK,
			"fifo": syscall.S_IFIFO, "sock": syscall.S_IFSOCK} {
			var st syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(root, "dev", name), &st); err != nil || st.Mode&syscall.S_IFMT != typ {
				t.Errorf("dev/%s: mode %o, %v", name, st.Mode, err)
			}
		}
	})

	t.Run("xattrs", func(t *testing.T) {
		for name, root := range ext {
			for _, f := range []string{"etc/hostname", "sparse"} {
				want := sh(t, "getfattr", "-d", "-e", "hex", filepath.Join(tree, f))
				got := sh(t, "getfattr", "-d", "-e", "hex", filepath.Join(root, f))
				want = strings.Replace(want, filepath.Join(tree, f), f, 1)
				got = strings.Replace(got, filepath.Join(root, f), f, 1)
				// getfattr prints relative names without the leading "/".
				want = strings.ReplaceAll(want, strings.TrimPrefix(filepath.Join(tree, f), "/"), f)
				got = strings.ReplaceAll(got, strings.TrimPrefix(filepath.Join(root, f), "/"), f)
				if got != want {
					t.Errorf("%s %s: getfattr:\n%s\nwant:\n%s", name, f, got, want)
				}
			}
			buf := make([]byte, 4)
			if _, err := syscall.Getxattr(filepath.Join(root, "sparse"), "user.big", buf); err != syscall.ERANGE {
				t.Errorf("%s: getxattr into a small buffer: %v, want ERANGE", name, err)
			}
			if _, err := syscall.Getxattr(filepath.Join(root, "sparse"), "user.none", buf); err != syscall.ENODATA {
				t.Errorf("%s: missing xattr: %v, want ENODATA", name, err)
			}
		}
	})

	t.Run("partition raw", func(t *testing.T) {
		sh(t, "cmp", "-n", strconv.FormatInt(fileSize(t, ext4Part), 10), ext4Part, filepath.Join(pt, "vda", "part1.raw"))
		sh(t, "cmp", "-n", strconv.FormatInt(fileSize(t, fat16), 10), fat16, filepath.Join(pt, "vdc", "part6.raw"))
		names := func(p string) string {
			ents, err := os.ReadDir(p)
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, e := range ents {
				s = append(s, e.Name())
			}
			return strings.Join(s, " ")
		}
		if got := names(filepath.Join(pt, "vda")); got != "part1 part1.raw part2 part2.raw part3.raw" {
			t.Errorf("vda/ holds %s", got)
		}
		if got := names(filepath.Join(pt, "vdc")); got != "part1 part1.raw part2.raw part5 part5.raw part6 part6.raw" {
			t.Errorf("vdc/ holds %s", got)
		}
		if _, err := os.Stat(filepath.Join(pt, "vda", "part3")); !os.IsNotExist(err) {
			t.Errorf("swap partition as a folder: %v", err)
		}
	})

	t.Run("ls and cat", func(t *testing.T) {
		for _, p := range []string{"vdb/etc/hostname", "vda/part1/hard/fast", "vdc/part5/modes/owned",
			"vda/part2/A directory with a long name/Ünïcode file name.txt", "vdc/part1/sparse"} {
			got := mustCairn(t, vault, "cat", point+":"+p)
			src := filepath.Join(tree, p[strings.Index(p, "/")+1:])
			if strings.HasPrefix(p, "vda/part1/") || strings.HasPrefix(p, "vdc/part") {
				src = filepath.Join(tree, strings.SplitN(p, "/", 3)[2])
			}
			if strings.Contains(p, "Ünïcode") {
				src = filepath.Join(fat32Tree, "A directory with a long name", "Ünïcode file name.txt")
			}
			want, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("cat %s: %d bytes differ from %s (%d)", p, len(got), src, len(want))
			}
		}
		var list []struct {
			Name   string `json:"name"`
			Type   string `json:"type"`
			Mode   string `json:"mode"`
			Uid    uint32 `json:"uid"`
			Size   uint64 `json:"size"`
			Target string `json:"target"`
		}
		mustJSON(t, mustCairn(t, vault, "ls", "--json", point+":vda/part1/modes"), &list)
		got := ""
		for _, e := range list {
			got += fmt.Sprintf("%s %s %s %d", e.Name, e.Type, e.Mode, e.Uid)
			if e.Type == "file" {
				got += fmt.Sprintf(" %d", e.Size)
			}
			got += ";"
		}
		if want := "none file 0000 0 0;owned file 0600 1234 6;private file 0640 0 0;setuid file 4755 0 0;tmp dir 1777 1234;"; got != want {
			t.Errorf("ls --json modes:\n%s\nwant\n%s", got, want)
		}
		text := mustCairn(t, vault, "ls", point+":vdb/hard")
		if !strings.Contains(text, "fast -> ../etc/hostname") || !strings.Contains(text, "-rw-r--r-- 3 0 0") {
			t.Errorf("ls vdb/hard:\n%s", text)
		}
		if out := mustCairn(t, vault, "ls", point+":vdc"); !strings.Contains(out, "part5") || !strings.Contains(out, "ext3") {
			t.Errorf("ls vdc:\n%s", out)
		}
		if out := mustCairn(t, vault, "ls", point); !strings.Contains(out, "ext4 filesystem") {
			t.Errorf("ls POINT:\n%s", out)
		}
		if out := mustCairn(t, vault, "ls", point+":vdb/many"); strings.Count(out, "\n") != gtManyEntries() {
			t.Errorf("ls many: %d lines", strings.Count(out, "\n"))
		}
		for p, msg := range map[string]string{"vdb/etc": "is a directory", "vdb/nope": "no such file",
			"vda/part3/x": "no readable filesystem", "vda/part9/x": "no such file"} {
			r := cairn(t, vault, "cat", point+":"+p)
			if r.code == 0 || !strings.Contains(r.stderr, msg) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("cat %s: exit %d, %q; want one line with %q", p, r.code, r.stderr, msg)
			}
		}
	})

	t.Run("many entries", func(t *testing.T) {
		ents, err := os.ReadDir(filepath.Join(ext["bare ext4"], "many"))
		if err != nil || len(ents) != gtManyEntries() {
			t.Fatalf("many/: %d entries, %v", len(ents), err)
		}
		if _, err := os.Stat(filepath.Join(ext["mbr ext2"], "many", ents[len(ents)/2].Name())); err != nil {
			t.Error(err)
		}
	})
	t.Logf("all done at %v", time.Since(start).Round(time.Millisecond))
}

// execInput runs a command with input on stdin.
func execInput(t *testing.T, input, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestGuestDamaged scribbles over a directory block of a guest ext4: the
// directory reads as EIO with a log line naming point, disk and inode,
// the rest of the filesystem still reads, and cairn ls says "damaged
// filesystem" on one line.
func TestGuestDamaged(t *testing.T) {
	needTool(t, "mkfs.ext4", "debugfs", "dd")
	needFUSE(t)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "d"), 0o755)
	os.MkdirAll(filepath.Join(tree, "ok"), 0o755)
	for i := 0; i < 50; i++ {
		os.WriteFile(filepath.Join(tree, "d", fmt.Sprintf("f%d", i)), []byte("x"), 0o644)
	}
	os.WriteFile(filepath.Join(tree, "ok", "fine"), []byte("fine\n"), 0o644)
	img := filepath.Join(dir, "e.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-d", tree, img, "32M")
	blk := strings.TrimSpace(sh(t, "debugfs", "-R", "bmap /d 0", img))
	blk = blk[strings.LastIndex(blk, "\n")+1:]
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, bytes.Repeat([]byte{0xA5, 0x7F, 0x13}, 4096/3+1)[:4096], 0o644)
	sh(t, "dd", "if="+junk, "of="+img, "bs=4096", "seek="+blk, "conv=notrunc", "status=none")
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "db01", "vdb="+img))
	m := startMount(t, vault)
	root := filepath.Join(m.dir, "db01", "latest", "vdb")
	if _, err := os.ReadDir(filepath.Join(root, "d")); !errors.Is(err, syscall.EIO) {
		t.Errorf("damaged directory: %v, want EIO", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "ok", "fine")); err != nil || string(b) != "fine\n" {
		t.Errorf("intact file: %q, %v", b, err)
	}
	r := cairn(t, vault, "ls", point+":vdb/d")
	if r.code == 0 || !strings.Contains(r.stderr, "damaged filesystem") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("ls of a damaged directory: exit %d %q", r.code, r.stderr)
	}
	m.stop(t)
	if log := m.log.String(); !strings.Contains(log, point+" disk vdb inode") {
		t.Errorf("no log line naming point, disk and inode:\n%s", log)
	}
}

// realPVs are the heads (label and metadata, the first MiB) of two
// 48 MiB PVs made by LVM2's own pvcreate, vgcreate, lvcreate and
// lvextend (fs/guest/lvm/testdata/mkreal.sh), and the layout lvs
// printed for them: per LV segment, its first extent, extents, stripes,
// stripe size and PV extent ranges.
type lvSegment struct {
	lv           string
	start, count int64
	stripeSize   int64
	pvs          []int   // PV of each stripe
	firstExtents []int64 // first PV extent of each stripe
}

func realPVs(t *testing.T) (heads [2][]byte, segs []lvSegment) {
	t.Helper()
	dir := filepath.Join("..", "fs", "guest", "lvm", "testdata")
	for i := range heads {
		out := sh(t, "sh", "-c", "gzip -dc "+filepath.Join(dir, fmt.Sprintf("real-lvm2-pv%d.gz", i))+" | base64 -w0")
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
		if err != nil || len(b) != 1<<20 {
			t.Fatalf("pv%d head: %d bytes, %v", i, len(b), err)
		}
		heads[i] = b
	}
	lvs, err := os.ReadFile(filepath.Join(dir, "real-lvm2.lvs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(lvs)), "\n") {
		f := strings.Split(line, ";")
		if len(f) != 7 {
			continue // the pvs lines
		}
		s := lvSegment{lv: f[0]}
		s.start, _ = strconv.ParseInt(f[1], 10, 64)
		s.count, _ = strconv.ParseInt(f[2], 10, 64)
		s.stripeSize, _ = strconv.ParseInt(strings.TrimSuffix(f[4], "B"), 10, 64)
		for _, r := range strings.Fields(f[5]) { // pv0:8-11
			var pv int
			var a, b int64
			fmt.Sscanf(r, "pv%d:%d-%d", &pv, &a, &b)
			s.pvs, s.firstExtents = append(s.pvs, pv), append(s.firstExtents, a)
		}
		segs = append(segs, s)
	}
	return heads, segs
}

// placeLV writes img into LV lv of the real PVs, the PVs starting at
// pvAt on disk: 1 MiB extents after a 1 MiB pe_start, stripes
// round-robin in stripe-size chunks, as lvs describes them.
func placeLV(t *testing.T, disk string, segs []lvSegment, lv string, img []byte, pvAt [2]int64) {
	t.Helper()
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const ext = 1 << 20
	for off := int64(0); off < int64(len(img)); off += 4096 {
		for _, s := range segs {
			o := off - s.start*ext
			if s.lv != lv || o < 0 || o >= s.count*ext {
				continue
			}
			k, at := 0, o
			if n := int64(len(s.pvs)); n > 1 {
				chunk := o / s.stripeSize
				k, at = int(chunk%n), chunk/n*s.stripeSize+o%s.stripeSize
			}
			pv := s.pvs[k]
			if pvAt[pv] < 0 {
				continue // that PV is not on this disk
			}
			if _, err := f.WriteAt(img[off:off+4096], pvAt[pv]+ext+s.firstExtents[k]*ext+at); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestGuestLVM backs up disks holding LVM2 PVs made by LVM2 itself, with
// ext4 filesystems (mkfs.ext4 -d) in a linear, a striped and a
// two-segment LV, mounts them and compares: each LV is DISK/VG-LV/ and
// DISK/VG-LV.raw beside the partitions; a disk holding only one of the
// VG's PVs lists the LVs that need the other as unreadable, saying so.
// Beside them: swap, LUKS2 and btrfs partitions, shown as what they are
// with their UUIDs, and a bare ext4 behind a boot sector without
// partitions.
func TestGuestLVM(t *testing.T) {
	needTool(t, "mkfs.ext4", "debugfs", "sgdisk", "sfdisk", "mkswap", "cryptsetup", "mkfs.btrfs", "blkid",
		"gzip", "base64", "cmp", "diff", "dd")
	needFUSE(t)
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	heads, segs := realPVs(t)
	// One tree of real files per LV, a few MiB so the striped LV's
	// files cross many stripes.
	imgs := map[string][]byte{}
	trees := map[string]string{}
	for i, lv := range []string{"lin-ear", "str-ipe", "multi"} {
		tree := filepath.Join(dir, lv+"-tree")
		sourceTree(t, filepath.Join(tree, "src"), int64(2+i)<<20)
		os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
		os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte(lv+"\n"), 0o644)
		img := filepath.Join(dir, lv+".img")
		sh(t, "mkfs.ext4", "-q", "-F", "-d", tree, img, "8M")
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		imgs[lv], trees[lv] = b, tree
	}
	// vda: GPT, pv0 as part1, an ext4 as part2, pv1 as part3.
	vda := createSized(t, filepath.Join(dir, "vda.img"), 120<<20)
	sh(t, "sgdisk", "-n1:1M:+48M", "-t1:8e00", "-n2:0:+16M", "-n3:0:+48M", "-t3:8e00", vda)
	plain := filepath.Join(dir, "plain.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", trees["lin-ear"], plain, "16M")
	gtPlace(t, plain, vda, 49<<20)
	pvAt := [2]int64{1 << 20, 65 << 20}
	writeAt(t, vda, pvAt[0], heads[0])
	writeAt(t, vda, pvAt[1], heads[1])
	for lv, img := range imgs {
		placeLV(t, vda, segs, lv, img, pvAt)
	}
	// vdc: pv0 alone, as a whole disk: pv1 is "on another disk".
	vdc := createSized(t, filepath.Join(dir, "vdc.img"), 48<<20)
	writeAt(t, vdc, 0, heads[0])
	for lv, img := range imgs {
		placeLV(t, vdc, segs, lv, img, [2]int64{0, -1})
	}
	// vdb: swap, LUKS2 and btrfs partitions.
	vdb := createSized(t, filepath.Join(dir, "vdb.img"), 160<<20)
	sh(t, "sgdisk", "-n1:1M:+8M", "-t1:8200", "-n2:0:+20M", "-t2:8309", "-n3:0:+120M", vdb)
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("secret"), 0o600)
	uuids := map[string]string{}
	for i, mk := range [][]string{
		{"mkswap", "-q"},
		{"cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", key},
		{"mkfs.btrfs", "-q"},
	} {
		p := filepath.Join(dir, fmt.Sprintf("vdb%d.img", i+1))
		createSized(t, p, []int64{8, 20, 120}[i]<<20)
		sh(t, mk[0], append(mk[1:], p)...)
		uuids[fmt.Sprint("part", i+1)] = strings.TrimSpace(sh(t, "blkid", "-p", "-s", "UUID", "-o", "value", p))
		gtPlace(t, p, vdb, []int64{1, 9, 29}[i]<<20)
	}
	// vdd: a bare ext4 behind an MBR boot sector with no partitions.
	vdd := filepath.Join(dir, "vdd.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", trees["multi"], vdd, "16M")
	execInput(t, "label: dos\n", "sfdisk", "-q", "--wipe", "never", vdd)

	mustCairn(t, vault, "init")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "lvm01",
		"vda="+vda, "vdb="+vdb, "vdc="+vdc, "vdd="+vdd))
	m := startMount(t, vault)
	pt := filepath.Join(m.dir, "lvm01", strings.TrimPrefix(point, "lvm01@"))
	names := func(p string) string {
		ents, err := os.ReadDir(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var s []string
		for _, e := range ents {
			s = append(s, e.Name())
		}
		return strings.Join(s, " ")
	}

	t.Run("LVs of a GPT disk", func(t *testing.T) {
		want := "my--vg-lin--ear my--vg-lin--ear.raw my--vg-multi my--vg-multi.raw my--vg-str--ipe my--vg-str--ipe.raw " +
			"part1.raw part2 part2.raw part3.raw"
		if got := names(filepath.Join(pt, "vda")); got != want {
			t.Fatalf("vda/ holds\n%s\nwant\n%s", got, want)
		}
		for lv, img := range imgs {
			name := "my--vg-" + strings.ReplaceAll(lv, "-", "--")
			raw := filepath.Join(pt, "vda", name+".raw")
			if size := fileSize(t, raw); size != 8<<20 {
				t.Errorf("%s: %d bytes", raw, size)
			}
			if got, err := os.ReadFile(raw); err != nil || !bytes.Equal(got, img) {
				t.Errorf("%s differs from the filesystem image (%v)", raw, err)
			}
			out := filepath.Join(dir, "out-"+lv)
			sh(t, "cp", "-a", filepath.Join(pt, "vda", name), out)
			sh(t, "diff", "-r", "--no-dereference", "-x", "lost+found", trees[lv], out)
			gtCompare(t, trees[lv], filepath.Join(pt, "vda", name), "")
			// debugfs reads the same file out of the image.
			f := "src/" + firstFile(t, filepath.Join(trees[lv], "src"))
			dumped := filepath.Join(dir, "dumped-"+lv)
			sh(t, "debugfs", "-R", "dump /"+f+" "+dumped, filepath.Join(dir, lv+".img"))
			sameFile(t, dumped, filepath.Join(pt, "vda", name, f))
			gtRandomReads(t, filepath.Join(dir, lv+".img"), raw, 3, 50)
			// SEEK_DATA/SEEK_HOLE on the LV never skip data.
			gtSameSparse(t, filepath.Join(dir, lv+".img"), raw)
			sparse := filepath.Join(dir, "sparse-"+lv)
			sh(t, "cp", "--sparse=always", raw, sparse)
			sameFile(t, filepath.Join(dir, lv+".img"), sparse)
			if holes := checkSeeks(t, raw, img); holes == 0 && lv == "lin-ear" {
				t.Errorf("%s: no hole reported", raw)
			}
		}
		sh(t, "diff", "-r", "-x", "lost+found", trees["lin-ear"], filepath.Join(pt, "vda", "part2"))
		got := mustCairn(t, vault, "cat", point+":vda/my--vg-str--ipe/etc/hostname")
		if got != "str-ipe\n" {
			t.Errorf("cat: %q", got)
		}
	})

	t.Run("show and ls", func(t *testing.T) {
		var v struct {
			Disks []struct {
				Name       string `json:"name"`
				Content    string `json:"content"`
				Partitions []struct {
					Name, Type, Filesystem, Content, Error, VG, LV string
					Start                                          int64
				} `json:"partitions"`
			} `json:"disks"`
		}
		mustJSON(t, mustCairn(t, vault, "show", "--json", point), &v)
		got := ""
		for _, d := range v.Disks {
			got += d.Name + " " + d.Content + ":"
			for _, p := range d.Partitions {
				got += fmt.Sprintf(" %s=%s|%s|%s", p.Name, p.Type, p.Filesystem, p.Content)
				if p.Error != "" {
					got += "|error"
				}
			}
			got += "\n"
		}
		pv := func(uuid string) string { return "LVM2 PV (UUID " + uuid + ", VG my-vg)" }
		lvsText, _ := os.ReadFile(filepath.Join("..", "fs", "guest", "lvm", "testdata", "real-lvm2.lvs"))
		pvUUID := map[string]string{}
		for _, line := range strings.Split(string(lvsText), "\n") {
			if f := strings.Split(line, ";"); len(f) == 3 {
				pvUUID[f[0]] = f[1]
			}
		}
		want := "vda gpt, 3 partitions, 3 LVM logical volumes: part1=Linux LVM||" + pv(pvUUID["pv0"]) +
			" part2=Linux filesystem|ext4| part3=Linux LVM||" + pv(pvUUID["pv1"]) +
			" my--vg-lin--ear=LVM linear|ext4| my--vg-str--ipe=LVM striped (2 stripes)|ext4| my--vg-multi=LVM linear|ext4|\n" +
			"vdb gpt, 3 partitions: part1=Linux swap||swap (UUID " + uuids["part1"] + ")" +
			" part2=Linux LUKS||LUKS2 (UUID " + uuids["part2"] + ")" +
			" part3=Linux filesystem||btrfs (UUID " + uuids["part3"] + ")\n" +
			"vdc " + pv(pvUUID["pv0"]) + ", 3 LVM logical volumes: my--vg-lin--ear=LVM linear|ext4|" +
			" my--vg-str--ipe=LVM striped (2 stripes)|||error my--vg-multi=LVM linear|||error\n" +
			"vdd ext4 filesystem:\n"
		if got != want {
			t.Errorf("show --json:\n%s\nwant:\n%s", got, want)
		}
		text := mustCairn(t, vault, "ls", point+":vdb")
		for _, s := range []string{"not readable: swap (UUID " + uuids["part1"] + ")", "not readable: LUKS2 (UUID " + uuids["part2"] + ")",
			"not readable: btrfs (UUID " + uuids["part3"] + ")"} {
			if !strings.Contains(text, s) {
				t.Errorf("ls vdb does not say %q:\n%s", s, text)
			}
		}
		text = mustCairn(t, vault, "ls", point+":vdc")
		if !strings.Contains(text, "unreadable: LV my-vg/str-ipe: needs PV pv1 (UUID "+pvUUID["pv1"]) {
			t.Errorf("ls vdc:\n%s", text)
		}
		for p, msg := range map[string]string{
			"vdb/part1/x":             "no readable filesystem in part1 (Linux swap, swap (UUID " + uuids["part1"] + "))",
			"vda/part1":               "no readable filesystem in part1 (Linux LVM, LVM2 PV (UUID " + pvUUID["pv0"],
			"vdc/my--vg-multi/x":      "needs PV pv1 (UUID " + pvUUID["pv1"] + ", last seen as",
			"vda/my--vg-multi/nope/x": "no such file",
		} {
			r := cairn(t, vault, "cat", point+":"+p)
			if r.code == 0 || !strings.Contains(r.stderr, msg) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("cat %s: exit %d, %q; want one line with %q", p, r.code, r.stderr, msg)
			}
		}
	})

	t.Run("missing PV", func(t *testing.T) {
		want := "my--vg-lin--ear my--vg-lin--ear.raw my--vg-multi.raw my--vg-str--ipe.raw"
		if got := names(filepath.Join(pt, "vdc")); got != want {
			t.Fatalf("vdc/ holds %s, want %s", got, want)
		}
		sh(t, "diff", "-r", "-x", "lost+found", trees["lin-ear"], filepath.Join(pt, "vdc", "my--vg-lin--ear"))
		if _, err := os.ReadFile(filepath.Join(pt, "vdc", "my--vg-multi.raw")); !errors.Is(err, syscall.EIO) {
			t.Errorf("reading an LV whose PV is elsewhere: %v, want EIO", err)
		}
		if _, err := os.Stat(filepath.Join(pt, "vdc", "my--vg-multi")); !errors.Is(err, syscall.EIO) {
			t.Errorf("its folder: %v, want EIO", err)
		}
	})

	t.Run("unsupported and bare", func(t *testing.T) {
		if got := names(filepath.Join(pt, "vdb")); got != "part1.raw part2.raw part3.raw" {
			t.Errorf("vdb/ holds %s", got)
		}
		sameFile(t, filepath.Join(dir, "vdb1.img"), filepath.Join(pt, "vdb", "part1.raw"))
		sh(t, "diff", "-r", "-x", "lost+found", trees["multi"], filepath.Join(pt, "vdd"))
	})

	m.stop(t)
	log := m.log.String()
	for _, s := range []string{"vdb part1: swap (UUID " + uuids["part1"] + "): no filesystem cairn reads",
		"vdb part2: LUKS2 (UUID " + uuids["part2"] + ")", "vdb part3: btrfs (UUID " + uuids["part3"] + ")",
		"vdc my--vg-multi: LV my-vg/multi: needs PV pv1", "vdc my--vg-multi.raw: read at 0:"} {
		if !strings.Contains(log, s) {
			t.Errorf("mount log does not say %q:\n%s", s, log)
		}
	}
	if n := strings.Count(log, "swap (UUID"); n != 1 {
		t.Errorf("swap logged %d times", n)
	}
}

// checkSeeks walks f with SEEK_DATA and SEEK_HOLE and checks that every
// hole it reports reads as zeros in want, the file's content; it returns
// the bytes reported as holes.
func checkSeeks(t *testing.T, p string, want []byte) (holes int64) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const seekData, seekHole = 3, 4
	size := int64(len(want))
	for off := int64(0); off < size; {
		data, err := f.Seek(off, seekData)
		if err != nil { // ENXIO: the rest is a hole
			data = size
		}
		if data < off || data > size {
			t.Fatalf("%s: SEEK_DATA from %d gives %d", p, off, data)
		}
		if !bytes.Equal(want[off:data], make([]byte, data-off)) {
			t.Fatalf("%s: hole [%d, %d) holds data", p, off, data)
		}
		holes += data - off
		if data == size {
			break
		}
		hole, err := f.Seek(data, seekHole)
		if err != nil || hole <= data || hole > size {
			t.Fatalf("%s: SEEK_HOLE from %d gives %d, %v", p, data, hole, err)
		}
		off = hole
	}
	return holes
}

// firstFile is the path of the largest regular file under dir, relative.
func firstFile(t *testing.T, dir string) string {
	t.Helper()
	best, size := "", int64(-1)
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, _ := d.Info(); info.Size() > size {
				best, size = p, info.Size()
			}
		}
		return nil
	})
	rel, _ := filepath.Rel(dir, best)
	return rel
}
