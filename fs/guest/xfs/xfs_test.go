package xfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
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
	if rel == "." || rel == "" {
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

// treeStats counts what a comparison covered.
type treeStats struct {
	files, dirs, links, bytes int
}

// compareTree walks src and checks that fsys shows the same tree: names,
// types, modes, owners, sizes, link counts, contents (full and random
// reads), link targets, attributes, data ranges.
func compareTree(t *testing.T, fsys *FS, src string) treeStats {
	t.Helper()
	spec := xattrSpec(t, src)
	var stats treeStats
	r := rand.New(rand.NewPCG(3, 4))
	hardlinks := map[uint64]uint64{} // source inode -> image inode
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
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
			stats.files++
			stats.bytes += int(st.Size)
			compareFile(t, fsys, ino, path, rel, r)
		case syscall.S_IFLNK:
			stats.links++
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
			stats.dirs++
			compareDir(t, fsys, ino, path, rel)
		}
		compareXattrs(t, fsys, ino, spec[rel], rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return stats
}

func compareDir(t *testing.T, fsys *FS, ino uint64, path, rel string) {
	t.Helper()
	wantNames := sortedNames(t, path)
	got, err := fsys.ReadDir(ino)
	if err != nil {
		t.Errorf("ReadDir %s: %v", rel, err)
		return
	}
	var gotNames []string
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
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(want))
	got := make([]byte, size+10)
	n, err := fsys.ReadAt(ino, got, 0)
	if n != int(size) || !errors.Is(err, io.EOF) || !bytes.Equal(got[:n], want) {
		t.Errorf("%s: full read %d, %v; want %d bytes, EOF", rel, n, err, size)
	}
	// Random reads, some straddling block and file ends.
	for range 20 {
		off := r.Int64N(size + 1)
		n := r.IntN(3 * 4096)
		if r.IntN(4) == 0 && size > 4096 {
			off = size - int64(r.IntN(4096))
		}
		wn := max(0, min(int64(n), size-off))
		g := make([]byte, n)
		gn, err := fsys.ReadAt(ino, g, off)
		if int64(gn) != wn || !bytes.Equal(g[:gn], want[off:off+wn]) {
			t.Errorf("%s: ReadAt(%d, %d) = %d, %v; want %d bytes", rel, off, n, gn, err, wn)
		}
		if gn < n && err != io.EOF {
			t.Errorf("%s: short ReadAt(%d, %d) without EOF: %v", rel, off, n, err)
		}
	}
	if _, err := fsys.ReadAt(ino, make([]byte, 1), size); err != io.EOF {
		t.Errorf("%s: read at size: %v, want EOF", rel, err)
	}
	// Data ranges: every hole of the source is a hole here too (the
	// image has no data where src has none, as fixImage punched them).
	var gotRanges [][2]int64
	for off := int64(0); off < size; {
		s, e, err := fsys.NextData(ino, off)
		if err != nil {
			t.Errorf("%s: NextData(%d): %v", rel, off, err)
			break
		}
		if s >= size {
			break
		}
		if e <= off || s < off {
			t.Errorf("%s: NextData(%d) = [%d, %d)", rel, off, s, e)
			break
		}
		if k := len(gotRanges) - 1; k >= 0 && gotRanges[k][1] == s {
			gotRanges[k][1] = e
		} else {
			gotRanges = append(gotRanges, [2]int64{s, e})
		}
		off = e
	}
	if wantRanges := dataRanges(t, path); size > 0 && !slices.Equal(gotRanges, wantRanges) {
		t.Errorf("%s: data ranges %v, want %v", rel, gotRanges, wantRanges)
	}
}

func compareXattrs(t *testing.T, fsys *FS, ino uint64, spec map[string]int, rel string) {
	t.Helper()
	want := slices.Sorted(maps.Keys(spec))
	got, err := fsys.ListXattr(ino)
	if err != nil {
		t.Errorf("ListXattr %s: %v", rel, err)
		return
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s: xattrs %q, want %q", rel, got, want)
	}
	for _, name := range want {
		g, err := fsys.GetXattr(ino, name)
		if err != nil || !bytes.Equal(g, xattrValue(spec[name])) {
			t.Errorf("%s: xattr %s = %d bytes, %v; want %d", rel, name, len(g), err, spec[name])
		}
	}
	if _, err := fsys.GetXattr(ino, "user.absent"); !errors.Is(err, guest.ErrNoXattr) {
		t.Errorf("%s: absent xattr: %v", rel, err)
	}
}

var (
	dbField = regexp.MustCompile(`(?m)^core\.(mode|uid|gid|nlinkv2|onlink|size|nblocks|mtime\.sec|mtime\.nsec|ctime\.sec|atime\.sec) = (.*)$`)
)

// compareXfsDB checks every path of src against what xfs_db reports for
// the same image: inode numbers and entry types through ls of every
// directory, and mode, owner, link count, size, blocks and times through
// one print per inode.
func compareXfsDB(t *testing.T, fsys *FS, im *image, src string) int {
	t.Helper()
	var paths []string
	checked := 0
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			// Names, inode numbers and types from xfs_db's ls.
			dbPath := "/" + filepath.ToSlash(rel)
			if rel == "." {
				dbPath = "/"
			}
			ents := xfsLs(t, im.path, dbPath)
			got, err := fsys.ReadDir(lookupPath(t, fsys, filepath.ToSlash(rel)))
			if err != nil {
				t.Errorf("ReadDir %s: %v", rel, err)
				return nil
			}
			var dbEnts []guest.DirEntry
			for _, e := range ents {
				if e.name != "." && e.name != ".." {
					mode := map[string]uint32{"regular": syscall.S_IFREG, "directory": syscall.S_IFDIR, "symlink": syscall.S_IFLNK,
						"chardev": syscall.S_IFCHR, "blkdev": syscall.S_IFBLK, "fifo": syscall.S_IFIFO, "socket": syscall.S_IFSOCK}[e.typ]
					dbEnts = append(dbEnts, guest.DirEntry{Name: e.name, Ino: e.ino, Mode: mode})
				}
			}
			sort.Slice(dbEnts, func(i, j int) bool { return dbEnts[i].Name < dbEnts[j].Name })
			if im.v5 || strings.Contains(xfsDB(t, im.path, "version"), "FTYPE") {
				if !slices.Equal(got, dbEnts) {
					t.Errorf("%s: listing differs from xfs_db ls (%d and %d entries)", rel, len(got), len(dbEnts))
				}
			}
			checked += len(ents)
			if len(ents) > 400 {
				return nil // big directories: their files are alike
			}
		}
		if rel != "." && !strings.Contains(rel, "/entry-") {
			paths = append(paths, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, p := range paths {
		cmds = append(cmds, "path /"+p, "print core.mode core.uid core.gid core.nlinkv2 core.size core.nblocks core.mtime.sec core.mtime.nsec core.ctime.sec core.atime.sec")
	}
	out := xfsDB(t, im.path, cmds...)
	groups := strings.Split(out, "core.mode = ")[1:]
	if len(groups) != len(paths) {
		t.Fatalf("xfs_db printed %d inodes for %d paths:\n%s", len(groups), len(paths), out)
	}
	for i, p := range paths {
		f := map[string]string{"mode": strings.SplitN(groups[i], "\n", 2)[0]}
		for _, m := range dbField.FindAllStringSubmatch(groups[i], -1) {
			f[m[1]] = m[2]
		}
		a, err := fsys.Stat(lookupPath(t, fsys, p))
		if err != nil {
			t.Errorf("Stat %s: %v", p, err)
			continue
		}
		num := func(k string) uint64 {
			n, err := strconv.ParseUint(f[k], 0, 64)
			if err != nil {
				t.Fatalf("%s: xfs_db %s = %q", p, k, f[k])
			}
			return n
		}
		tm := func(k string) int64 {
			x, err := time.ParseInLocation(time.ANSIC, f[k], time.UTC)
			if err != nil {
				t.Fatalf("%s: xfs_db %s = %q: %v", p, k, f[k], err)
			}
			return x.Unix()
		}
		size := num("size")
		if a.Mode&syscall.S_IFMT == syscall.S_IFCHR || a.Mode&syscall.S_IFMT == syscall.S_IFBLK || a.Mode&syscall.S_IFMT == syscall.S_IFIFO {
			size = 0
		}
		for _, c := range []struct {
			what      string
			got, want uint64
		}{
			{"mode", uint64(a.Mode), num("mode")},
			{"uid", uint64(a.Uid), num("uid")},
			{"gid", uint64(a.Gid), num("gid")},
			{"nlink", uint64(a.Nlink), num("nlinkv2")},
			{"size", a.Size, size},
			{"blocks", a.Blocks, num("nblocks") * uint64(im.bs) / 512},
			{"mtime", uint64(a.Mtime.Unix()), uint64(tm("mtime.sec"))},
			{"mtime ns", uint64(a.Mtime.Nanosecond()), num("mtime.nsec")},
			{"ctime", uint64(a.Ctime.Unix()), uint64(tm("ctime.sec"))},
			{"atime", uint64(a.Atime.Unix()), uint64(tm("atime.sec"))},
		} {
			if c.got != c.want {
				t.Errorf("%s: %s = %d, xfs_db says %d", p, c.what, c.got, c.want)
			}
		}
		checked++
	}
	return checked
}

type variant struct {
	name string
	size string
	opts []string
	// forms asks that the image hold every directory and attribute
	// form, checked with xfs_db.
	forms bool
}

// checkForms asserts with xfs_db that the tree exercises every form: a
// short form directory (a/b), a single-block one (root), a leaf one
// (mid), a node one with a btree block map (many); short form (f1), leaf
// (f4097) and node (attrs) attribute forks.
func checkForms(t *testing.T, im *image) {
	t.Helper()
	field := func(path, f string) string {
		out := xfsDB(t, im.path, "path "+path, "print "+f)
		_, v, _ := strings.Cut(strings.TrimSpace(out), " = ")
		return v
	}
	dirBlock := uint64(im.bs)
	for _, c := range []struct{ path, field, want string }{
		{"/a/b", "core.format", "1 (local)"},
		{"/", "core.format", "2 (extents)"},
		{"/", "core.size", strconv.FormatUint(dirBlock, 10)},
		{"/mid", "core.format", "2 (extents)"},
		{"/many", "core.format", "3 (btree)"},
		{"/f1", "core.aformat", "1 (local)"},
		{"/f4097", "core.aformat", "2 (extents)"},
		{"/attrs", "core.aformat", "2 (extents)"},
	} {
		if got := field(c.path, c.field); got != c.want {
			t.Errorf("%s: %s = %q, want %q", c.path, c.field, got, c.want)
		}
	}
	if sz, _ := strconv.ParseUint(field("/mid", "core.size"), 10, 64); sz <= dirBlock {
		t.Errorf("/mid has %d bytes of data blocks: not a leaf directory", sz)
	}
	// A node directory keeps a dabtree node at the start of its leaf
	// space, where a leaf directory keeps its single leaf.
	if out := xfsDB(t, im.path, "path /many", fmt.Sprintf("dblock %d", dirLeafOffset/im.bs), "print"); !regexp.MustCompile(`magic = 0x(3ebe|febe)`).MatchString(out) {
		t.Errorf("/many: no dabtree node at the leaf offset:\n%s", out)
	}
	if out := xfsDB(t, im.path, "path /attrs", "ablock 0", "print"); !regexp.MustCompile(`magic = 0x(3ebe|febe)`).MatchString(out) {
		t.Errorf("/attrs: attribute fork is not in node form:\n%s", out)
	}
}

var variants = []variant{
	{name: "v5-4k", size: "64m", forms: true},
	{name: "v5-1k", size: "64m", opts: []string{"-b", "size=1024"}},
	{name: "v5-dirblk16k", size: "64m", opts: []string{"-n", "size=16384"}},
	{name: "v5-nobigtime-nrext64", size: "64m", opts: []string{"-m", "bigtime=0", "-i", "nrext64=1"}},
	{name: "v5-reflink-rmap-4ag", size: "96m", opts: []string{"-m", "reflink=1,rmapbt=1", "-d", "agcount=4", "-s", "size=4096"}},
	{name: "v5-inode2k", size: "64m", opts: []string{"-i", "size=2048"}},
	{name: "v4", size: "64m", opts: []string{"-m", "crc=0"}, forms: true},
	{name: "v4-512-noftype", size: "64m", opts: []string{"-m", "crc=0", "-b", "size=512", "-n", "ftype=0"}},
}

func TestVariants(t *testing.T) {
	src := t.TempDir()
	buildTree(t, src, treeOpts{manyEntries: 3000, midEntries: 300, manyXattrs: 300, special: os.Geteuid() == 0})
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			im := mkfs(t, src, v.size, v.opts...)
			if v.forms {
				checkForms(t, im)
			}
			fsys := openImage(t, im.path)
			if err := fsys.LogErr(); err != nil {
				t.Errorf("fresh image: LogErr %v", err)
			}
			s := compareTree(t, fsys, src)
			n := compareXfsDB(t, fsys, im, src)
			t.Logf("compared %d files (%d bytes), %d dirs, %d symlinks with the source; %d names and inodes with xfs_db",
				s.files, s.bytes, s.dirs, s.links, n)
		})
	}
}

// TestConcurrent reads files, directories and attributes from many
// goroutines at once; run with -race.
func TestConcurrent(t *testing.T) {
	src := t.TempDir()
	buildTree(t, src, treeOpts{midEntries: 300})
	im := mkfs(t, src, "64m")
	fsys := openImage(t, im.path)
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
			for range 100 {
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
	// count 3: user_obj rw-, user 1234 r--, other ---.
	disk := []byte{0, 0, 0, 3,
		0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 6, 0, 0,
		0, 0, 0, 2, 0, 0, 4, 0xd2, 0, 4, 0, 0,
		0, 0, 0, 0x20, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}
	got, err := aclToXattr(1, disk)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{2, 0, 0, 0, 1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 2, 0, 4, 0, 0xd2, 4, 0, 0, 0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
	if !bytes.Equal(got, want) {
		t.Errorf("converted ACL %x, want %x", got, want)
	}
	for _, bad := range [][]byte{nil, {0, 0, 0, 2}, disk[:20], append(bytes.Clone(disk[:16]), 0)} {
		if _, err := aclToXattr(1, bad); !errors.Is(err, guest.ErrCorrupt) {
			t.Errorf("ACL %x: %v", bad, err)
		}
	}
}
