package ext4

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
	"golang.org/x/sys/unix"
)

// lookupPath resolves a slash-separated path from the root.
func lookupPath(t testing.TB, fsys *FS, rel string) uint64 {
	t.Helper()
	ino := fsys.Root()
	if rel == "." {
		return ino
	}
	for _, part := range strings.Split(rel, "/") {
		next, err := fsys.Lookup(ino, part)
		if err != nil {
			t.Fatalf("Lookup %s (%s): %v", rel, part, err)
		}
		ino = next
	}
	return ino
}

// compareTree walks src and checks that fsys shows the same tree.
// Paths in skip are not compared (known mke2fs quirks).
func compareTree(t *testing.T, fsys *FS, src string, skip ...string) {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	hardlinks := map[uint64]uint64{} // source inode -> image inode
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if slices.Contains(skip, rel) {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		ino := lookupPath(t, fsys, filepath.ToSlash(rel))
		a, err := fsys.Stat(ino)
		if err != nil {
			t.Errorf("Stat %s: %v", rel, err)
			return nil
		}
		if a.Ino != ino {
			t.Errorf("%s: Ino %d, looked up %d", rel, a.Ino, ino)
		}
		if a.Mode != st.Mode {
			t.Errorf("%s: mode %o, want %o", rel, a.Mode, st.Mode)
		}
		if a.Uid != st.Uid || a.Gid != st.Gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, a.Uid, a.Gid, st.Uid, st.Gid)
		}
		// mke2fs touches the root when it adds lost+found.
		if rel != "." && a.Mtime.Unix() != st.Mtim.Sec {
			t.Errorf("%s: mtime %v, want %d", rel, a.Mtime, st.Mtim.Sec)
		}
		typ := st.Mode & syscall.S_IFMT
		if typ != syscall.S_IFDIR {
			if a.Size != uint64(st.Size) {
				t.Errorf("%s: size %d, want %d", rel, a.Size, st.Size)
			}
			if a.Nlink != uint32(st.Nlink) {
				t.Errorf("%s: nlink %d, want %d", rel, a.Nlink, st.Nlink)
			}
		}
		if st.Nlink > 1 && typ == syscall.S_IFREG {
			if prev, ok := hardlinks[st.Ino]; ok && prev != ino {
				t.Errorf("%s: hard link has inode %d, its twin %d", rel, ino, prev)
			}
			hardlinks[st.Ino] = ino
		}
		switch typ {
		case syscall.S_IFREG:
			compareFile(t, fsys, ino, path, rel, r)
		case syscall.S_IFLNK:
			want, _ := os.Readlink(path)
			got, err := fsys.Readlink(ino)
			if err != nil || got != want {
				t.Errorf("%s: Readlink %q, %v; want %q", rel, got, err, want)
			}
		case syscall.S_IFCHR, syscall.S_IFBLK:
			if a.Rdev != st.Rdev {
				t.Errorf("%s: rdev %#x, want %#x", rel, a.Rdev, st.Rdev)
			}
		case syscall.S_IFDIR:
			compareDir(t, fsys, ino, path, rel)
		}
		compareXattrs(t, fsys, ino, path, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func compareDir(t *testing.T, fsys *FS, ino uint64, path, rel string) {
	t.Helper()
	want, err := os.ReadDir(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fsys.ReadDir(ino)
	if err != nil {
		t.Errorf("ReadDir %s: %v", rel, err)
		return
	}
	var wantNames, gotNames []string
	for _, e := range want {
		wantNames = append(wantNames, e.Name())
	}
	if rel == "." {
		wantNames = append(wantNames, "lost+found")
		sort.Strings(wantNames)
	}
	subdirs := 0
	for _, e := range got {
		gotNames = append(gotNames, e.Name)
		a, err := fsys.Stat(e.Ino)
		if err != nil {
			t.Errorf("Stat %s/%s: %v", rel, e.Name, err)
			continue
		}
		if a.Mode&syscall.S_IFMT != e.Mode {
			t.Errorf("%s/%s: entry type %o, inode mode %o", rel, e.Name, e.Mode, a.Mode)
		}
		if e.Mode == syscall.S_IFDIR {
			subdirs++
		}
	}
	if !slices.Equal(gotNames, wantNames) {
		t.Errorf("ReadDir %s: %d names, want %d", rel, len(gotNames), len(wantNames))
	}
	a, _ := fsys.Stat(ino)
	if a.Nlink != uint32(2+subdirs) {
		t.Errorf("%s: nlink %d, want %d", rel, a.Nlink, 2+subdirs)
	}
}

func compareFile(t *testing.T, fsys *FS, ino uint64, path, rel string, r *rand.Rand) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	size := st.Size()
	if size <= 64<<20 {
		want, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, size+10)
		n, err := fsys.ReadAt(ino, got, 0)
		if n != int(size) || !errors.Is(err, io.EOF) || !bytes.Equal(got[:n], want) {
			t.Errorf("%s: full read %d, %v; want %d bytes, EOF", rel, n, err, size)
		}
	}
	// Random reads, some straddling block and file ends.
	for range 40 {
		off := r.Int64N(size + 1)
		n := r.IntN(3 * 4096)
		if r.IntN(4) == 0 && size > 4096 {
			off = size - int64(r.IntN(4096))
		}
		checkRead(t, fsys, ino, f, rel, off, n, size)
	}
	if size > 4<<30 {
		for _, off := range []int64{100, 4<<30 + 12345, 5<<30 - 3000, 4<<30 - 10} {
			checkRead(t, fsys, ino, f, rel, off-5, 3010, size)
		}
	}
	if _, err := fsys.ReadAt(ino, make([]byte, 1), size); err != io.EOF {
		t.Errorf("%s: read at size: %v, want EOF", rel, err)
	}
}

func checkRead(t *testing.T, fsys *FS, ino uint64, f *os.File, rel string, off int64, n int, size int64) {
	t.Helper()
	want := make([]byte, n)
	wn, _ := f.ReadAt(want, off)
	got := make([]byte, n)
	gn, err := fsys.ReadAt(ino, got, off)
	if gn != wn || !bytes.Equal(got[:gn], want[:wn]) {
		t.Errorf("%s: ReadAt(%d, %d) = %d, %v; want %d bytes", rel, off, n, gn, err, wn)
	}
	if gn < n && err != io.EOF {
		t.Errorf("%s: short ReadAt(%d, %d) without EOF: %v", rel, off, n, err)
	}
}

func compareXattrs(t *testing.T, fsys *FS, ino uint64, path, rel string) {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			want = append(want, s)
		}
	}
	got, err := fsys.ListXattr(ino)
	if err != nil {
		t.Errorf("ListXattr %s: %v", rel, err)
		return
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s: xattrs %q, want %q", rel, got, want)
	}
	for _, name := range want {
		v := make([]byte, 65536)
		n, err := unix.Lgetxattr(path, name, v)
		if err != nil {
			t.Fatal(err)
		}
		g, err := fsys.GetXattr(ino, name)
		if err != nil || !bytes.Equal(g, v[:n]) {
			t.Errorf("%s: xattr %s = %q, %v; want %q", rel, name, g, err, v[:n])
		}
	}
	if _, err := fsys.GetXattr(ino, "user.absent"); !errors.Is(err, guest.ErrNoXattr) {
		t.Errorf("%s: absent xattr: %v", rel, err)
	}
}

type variant struct {
	name string
	prog string
	size string
	opts []string
	skip []string
}

var variants = []variant{
	{name: "ext4-4k", prog: "mkfs.ext4", size: "96M", opts: []string{"-b", "4096"}},
	{name: "ext4-1k", prog: "mkfs.ext4", size: "96M", opts: []string{"-b", "1024"}},
	{name: "ext4-2k", prog: "mkfs.ext4", size: "96M", opts: []string{"-b", "2048"}},
	{name: "ext4-64k", prog: "mkfs.ext4", size: "256M", opts: []string{"-b", "65536"}},
	{name: "ext4-noextent", prog: "mkfs.ext4", size: "96M", opts: []string{"-O", "^extent,^64bit"}},
	{name: "ext4-inline", prog: "mkfs.ext4", size: "96M", opts: []string{"-O", "inline_data"},
		// mke2fs 1.47 drops the trailing hole of a file with inline_data on.
		skip: []string{"sparse"}},
	{name: "ext4-metabg", prog: "mkfs.ext4", size: "96M", opts: []string{"-b", "1024", "-O", "meta_bg,^resize_inode"}},
	{name: "ext4-32bit", prog: "mkfs.ext4", size: "96M", opts: []string{"-O", "^64bit", "-I", "128"}},
	{name: "ext4-rootowner", prog: "mkfs.ext4", size: "96M", opts: []string{"-E", "root_owner=0:0", "-O", "64bit"}},
	{name: "ext4-bigalloc", prog: "mkfs.ext4", size: "128M", opts: []string{"-O", "bigalloc", "-C", "16k"}},
	{name: "ext3", prog: "mkfs.ext3", size: "96M", opts: nil},
	{name: "ext2-1k", prog: "mkfs.ext2", size: "96M", opts: []string{"-b", "1024"}},
	{name: "ext2-4k", prog: "mkfs.ext2", size: "96M", opts: nil},
}

func TestVariants(t *testing.T) {
	src := t.TempDir()
	buildTree(t, src, treeOpts{manyEntries: 300, bigSparse: true, special: os.Geteuid() == 0})
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			img := mkfs(t, v.prog, src, v.size, v.opts...)
			fsys := openImage(t, img)
			compareTree(t, fsys, src, v.skip...)
		})
	}
}

var manyEntries = flag.Int("ext4.many", 12000,
	"entries in TestManyEntries' directory (mke2fs -d is quadratic: 50000 takes minutes)")

// TestManyEntries checks a big hashed (htree) directory, and that Lookup
// in it is fast once the listing is cached.
func TestManyEntries(t *testing.T) {
	n := *manyEntries
	if testing.Short() {
		n = min(n, 2000)
	}
	src := t.TempDir()
	many := filepath.Join(src, "many")
	if err := os.Mkdir(many, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		writeFile(t, filepath.Join(many, "entry-"+itoa(i)), nil)
	}
	img := mkfs(t, "mkfs.ext4", src, "256M", "-N", itoa(n+100))
	// mke2fs -d writes linear directories; e2fsck -D turns them into htrees.
	needTool(t, "e2fsck")
	if out, err := exec.Command("e2fsck", "-fyD", img).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			t.Fatalf("e2fsck -fyD: %v\n%s", err, out)
		}
	}
	if out := runTool(t, "debugfs", "-R", "stat /many", img); n >= 1000 && !strings.Contains(out, "Flags: 0x81000") {
		t.Fatalf("directory not hashed:\n%s", out)
	}
	fsys := openImage(t, img)
	dir := lookupPath(t, fsys, "many")
	start := time.Now()
	ents, err := fsys.ReadDir(dir)
	if err != nil || len(ents) != n {
		t.Fatalf("ReadDir: %d entries, %v; want %d", len(ents), err, n)
	}
	t.Logf("ReadDir of %d entries: %v", n, time.Since(start))
	byName := map[string]uint64{}
	for _, e := range ents {
		byName[e.Name] = e.Ino
	}
	start = time.Now()
	for i := range n {
		name := "entry-" + itoa(i)
		ino, err := fsys.Lookup(dir, name)
		if err != nil || ino != byName[name] || ino == 0 {
			t.Fatalf("Lookup %s: %d, %v", name, ino, err)
		}
	}
	t.Logf("%d Lookups: %v", n, time.Since(start))
	if _, err := fsys.Lookup(dir, "absent"); !errors.Is(err, guest.ErrNotFound) {
		t.Errorf("Lookup absent: %v", err)
	}
}

var debugfsField = regexp.MustCompile(`(?m)(Inode|Links|Blockcount|Size): *(\d+)`)

// TestAgainstDebugfs checks inode numbers, link counts, sizes and block
// counts against what debugfs reports for the same image.
func TestAgainstDebugfs(t *testing.T) {
	src := t.TempDir()
	buildTree(t, src, treeOpts{bigSparse: true})
	for _, v := range []variant{variants[0], variants[1], variants[4]} {
		t.Run(v.name, func(t *testing.T) {
			img := mkfs(t, v.prog, src, v.size, v.opts...)
			checkAgainstDebugfs(t, openImage(t, img), img, "f4096", "hardlink", "sparse", "huge",
				"f"+itoa(1<<20+123), "slowlink", "a/b/c/d", "f4097")
		})
	}
}

var regexpBigalloc = regexp.MustCompile(`(?m)^Filesystem features:.*\bbigalloc\b`)

// checkAgainstDebugfs compares Stat of each path with debugfs's stat.
func checkAgainstDebugfs(t *testing.T, fsys *FS, img string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		out := runTool(t, "debugfs", "-R", "stat /"+p, img)
		want := map[string]uint64{}
		for _, m := range debugfsField.FindAllStringSubmatch(out, -1) {
			n, _ := strconv.ParseUint(m[2], 10, 64)
			if _, ok := want[m[1]]; !ok {
				want[m[1]] = n
			}
		}
		if len(want) < 4 {
			t.Fatalf("debugfs stat /%s:\n%s", p, out)
		}
		a, err := fsys.Stat(lookupPath(t, fsys, p))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]uint64{"Inode": a.Ino, "Links": uint64(a.Nlink), "Blockcount": a.Blocks, "Size": a.Size}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("%s: %s = %d, debugfs says %d", p, k, got[k], w)
			}
		}
	}
}

// TestConcurrent reads files, directories and attributes from many
// goroutines at once; run with -race.
func TestConcurrent(t *testing.T) {
	src := t.TempDir()
	buildTree(t, src, treeOpts{manyEntries: 500})
	fsys := openImage(t, mkfs(t, "mkfs.ext4", src, "64M"))
	want, err := os.ReadFile(filepath.Join(src, "f"+itoa(1<<20+123)))
	if err != nil {
		t.Fatal(err)
	}
	ino := lookupPath(t, fsys, "f"+itoa(1<<20+123))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			buf := make([]byte, 20000)
			for range 200 {
				off := r.IntN(len(want))
				n, _ := fsys.ReadAt(ino, buf, int64(off))
				if !bytes.Equal(buf[:n], want[off:off+n]) {
					t.Errorf("concurrent ReadAt at %d: wrong bytes", off)
					return
				}
				if err := walk(fsys, 20, 4096); err != nil {
					t.Errorf("walk: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestACLConversion(t *testing.T) {
	disk := []byte{1, 0, 0, 0, 1, 0, 6, 0, 2, 0, 4, 0, 0xd2, 4, 0, 0, 4, 0, 4, 0, 0x10, 0, 4, 0, 0x20, 0, 0, 0}
	got, err := aclToXattr(1, disk)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4+5*8 || got[0] != 2 || got[4+8+4] != 0xd2 {
		t.Errorf("converted ACL %x", got)
	}
	for _, bad := range [][]byte{nil, {2, 0, 0, 0}, {1, 0, 0, 0, 2, 0, 4, 0}, {1, 0, 0, 0, 0x40, 0, 0, 0}} {
		if _, err := aclToXattr(1, bad); !errors.Is(err, guest.ErrCorrupt) {
			t.Errorf("ACL %x: %v", bad, err)
		}
	}
}

var uninitRE = regexp.MustCompile(`(?m)(\d+) - +(\d+) +(\d+) - +(\d+) +\d+ +Uninit`)

// TestUnwritten checks that unwritten (preallocated) extents read as
// zeros whatever their blocks hold.
func TestUnwritten(t *testing.T) {
	src := t.TempDir()
	data := randBytes(rand.New(rand.NewPCG(1, 1)), 4096)
	writeFile(t, filepath.Join(src, "f"), data)
	img := mkfs(t, "mkfs.ext4", src, "16M", "-b", "4096")
	runTool(t, "debugfs", "-w", "-R", "fallocate /f 1 20", img)
	runTool(t, "debugfs", "-w", "-R", "sif /f size 86016", img)
	m := uninitRE.FindStringSubmatch(runTool(t, "debugfs", "-R", "ex /f", img))
	if m == nil {
		t.Fatal("debugfs made no unwritten extent")
	}
	first, _ := strconv.Atoi(m[3])
	last, _ := strconv.Atoi(m[4])
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Repeat([]byte{0xAB}, (last-first+1)*4096)
	if _, err := f.WriteAt(garbage, int64(first)*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	fsys := openImage(t, img)
	ino := lookupPath(t, fsys, "f")
	got := make([]byte, 86016)
	if n, err := fsys.ReadAt(ino, got, 0); n != len(got) || err != nil {
		t.Fatalf("ReadAt: %d, %v", n, err)
	}
	want := append(bytes.Clone(data), make([]byte, 86016-4096)...)
	if !bytes.Equal(got, want) {
		t.Error("unwritten extent did not read as zeros")
	}
}
