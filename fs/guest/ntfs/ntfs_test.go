package ntfs

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
	"golang.org/x/sys/unix"
)

// readAll reads a whole file through the reader.
func readAll(t testing.TB, fsys *FS, ino uint64, size uint64) []byte {
	t.Helper()
	b := make([]byte, size)
	n, err := fsys.ReadAt(ino, b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read inode %d: %v", ino, err)
	}
	if uint64(n) != size {
		t.Fatalf("read inode %d: %d of %d bytes", ino, n, size)
	}
	return b
}

// listXattrs returns the xattr names of a path on a mounted volume.
func listXattrs(t testing.TB, path string) []string {
	t.Helper()
	n, err := unix.Llistxattr(path, nil)
	must(t, err)
	buf := make([]byte, n)
	n, err = unix.Llistxattr(path, buf)
	must(t, err)
	var names []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" {
			names = append(names, s)
		}
	}
	return names
}

// compareTree walks the reader and the ntfs-3g mount of the same volume
// side by side and reports every difference: names, inode numbers,
// modes, owners, sizes, blocks, device numbers, times, contents, link
// targets, streams. It returns the number of files compared.
func compareTree(t *testing.T, fsys *FS, mnt string) int {
	t.Helper()
	type dir struct {
		path string
		ino  uint64
	}
	queue := []dir{{"", fsys.Root()}}
	files := 0
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		ents, err := fsys.ReadDir(d.ino)
		if err != nil {
			t.Errorf("ReadDir /%s: %v", d.path, err)
			continue
		}
		theirs, err := os.ReadDir(filepath.Join(mnt, d.path))
		must(t, err)
		var ours, want []string
		for _, e := range ents {
			ours = append(ours, e.Name)
		}
		for _, e := range theirs {
			want = append(want, e.Name())
		}
		if !slices.Equal(ours, want) {
			t.Errorf("/%s: names differ:\n ours   %q\n ntfs-3g %q", d.path, ours, want)
		}
		for _, e := range ents {
			rel := filepath.Join(d.path, e.Name)
			full := filepath.Join(mnt, rel)
			files++
			if ino, err := fsys.Lookup(d.ino, e.Name); err != nil || ino != e.Ino {
				t.Errorf("Lookup /%s: %d, %v; listed as %d", rel, ino, err, e.Ino)
			}
			a, err := fsys.Stat(e.Ino)
			if err != nil {
				t.Errorf("Stat /%s: %v", rel, err)
				continue
			}
			var st unix.Stat_t
			if err := unix.Lstat(full, &st); err != nil {
				t.Errorf("lstat %s: %v", full, err)
				continue
			}
			if e.Mode != a.Mode&syscall.S_IFMT {
				t.Errorf("/%s: listed with type %o, stat says %o", rel, e.Mode, a.Mode)
			}
			type field struct {
				name      string
				got, want uint64
			}
			link := a.Mode&syscall.S_IFMT == syscall.S_IFLNK
			if in, err := fsys.inode(e.Ino); err == nil && a.Mode&syscall.S_IFMT != syscall.S_IFDIR && uint32(in.links) != a.Nlink {
				// ntfs-3g counts a DOS alias as a link; this reader counts names.
				if dos := slices.ContainsFunc(in.names, func(n fileName) bool { return n.ns == nsDOS }); dos && uint32(in.links) == a.Nlink+1 {
					st.Nlink = uint64(a.Nlink)
				}
			}
			if link && ntfs3gBadLinks[rel] {
				st.Size = int64(a.Size) // checked against richLinks instead
			}
			if t, err := os.Readlink(full); link && err == nil && strings.HasPrefix(t, mnt+"/") {
				st.Size = int64(a.Size) // absolute under ntfs-3g's mount point; see below
			}
			for _, f := range []field{
				{"ino", a.Ino, st.Ino}, {"mode", uint64(a.Mode), uint64(st.Mode)},
				{"nlink", uint64(a.Nlink), uint64(st.Nlink)}, {"uid", uint64(a.Uid), uint64(st.Uid)},
				{"gid", uint64(a.Gid), uint64(st.Gid)}, {"size", a.Size, uint64(st.Size)},
				{"blocks", a.Blocks, uint64(st.Blocks)}, {"rdev", a.Rdev, st.Rdev},
				{"atime", fuseTime(a.Atime), uint64(st.Atim.Nano())},
				{"mtime", fuseTime(a.Mtime), uint64(st.Mtim.Nano())},
				{"ctime", fuseTime(a.Ctime), uint64(st.Ctim.Nano())},
			} {
				if f.got != f.want {
					t.Errorf("/%s: %s %d (%#o), ntfs-3g %d (%#o)", rel, f.name, f.got, f.got, f.want, f.want)
				}
			}
			compareXattrs(t, fsys, e.Ino, rel, full)
			switch a.Mode & syscall.S_IFMT {
			case syscall.S_IFDIR:
				queue = append(queue, dir{rel, e.Ino})
			case syscall.S_IFLNK:
				if ntfs3gBadLinks[rel] {
					continue
				}
				got, err := fsys.Readlink(e.Ino)
				if err != nil {
					t.Errorf("Readlink /%s: %v", rel, err)
					continue
				}
				want, err := os.Readlink(full)
				must(t, err)
				// ntfs-3g turns absolute Windows targets into absolute
				// paths under its mount point; ours are relative to the
				// link, so both must name the same place.
				if strings.HasPrefix(want, mnt+"/") {
					if abs := filepath.Join(filepath.Dir(full), got); abs != filepath.Clean(want) {
						t.Errorf("/%s: target %q (%s), ntfs-3g %q", rel, got, abs, want)
					}
				} else if got != want {
					t.Errorf("/%s: target %q, ntfs-3g %q", rel, got, want)
				}
			case syscall.S_IFREG:
				if a.Size > 16<<20 {
					continue // compared by random reads
				}
				want, err := os.ReadFile(full)
				must(t, err)
				if got := readAll(t, fsys, e.Ino, a.Size); !bytes.Equal(got, want) {
					t.Errorf("/%s: content differs", rel)
				}
			}
		}
	}
	return files
}

// fuseTime is t in nanoseconds as it reaches stat(2) through ntfs-3g:
// before 1970 its seconds round towards zero and its nanoseconds, which
// come out negative, are dropped by the kernel.
func fuseTime(t time.Time) uint64 {
	ns := t.UnixNano()
	if ns < 0 {
		return uint64(ns / 1e9 * 1e9)
	}
	return uint64(ns)
}

func compareXattrs(t *testing.T, fsys *FS, ino uint64, rel, full string) {
	t.Helper()
	got, err := fsys.ListXattr(ino)
	if err != nil {
		t.Errorf("ListXattr /%s: %v", rel, err)
		return
	}
	var want []string
	buf := make([]byte, maxSmallValue)
	for _, n := range listXattrs(t, full) {
		// ntfs-3g lists streams of any size; getxattr(2) fails (E2BIG)
		// for those over 64 KiB, which this reader does not list.
		if _, err := unix.Lgetxattr(full, n, buf); err == nil {
			want = append(want, n)
		} else if !errors.Is(err, unix.E2BIG) {
			t.Errorf("getxattr %s %s: %v", full, n, err)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("/%s: xattrs %q, ntfs-3g %q", rel, got, want)
		return
	}
	for _, n := range got {
		v, err := fsys.GetXattr(ino, n)
		if err != nil {
			t.Errorf("GetXattr /%s %s: %v", rel, n, err)
			continue
		}
		m, err := unix.Lgetxattr(full, n, buf)
		must(t, err)
		if !bytes.Equal(v, buf[:m]) {
			t.Errorf("/%s: xattr %s: %d bytes differ from ntfs-3g's %d", rel, n, len(v), m)
		}
	}
}

// TestAgainstMount compares everything the reader shows of a rich volume
// with what ntfs-3g shows when it mounts the same image.
func TestAgainstMount(t *testing.T) {
	img := richImage(t)
	fsys := openImage(t, img)
	mnt, _ := mountImage(t, img, "ro", "streams_interface=xattr")
	n := compareTree(t, fsys, mnt)
	if n < 400+30 {
		t.Errorf("compared only %d files", n)
	}
	t.Logf("compared %d files with the ntfs-3g mount", n)
}

// TestRichDetails checks what the comparison alone would not pin down:
// promised link targets, hidden names, hard links, attribute lists.
func TestRichDetails(t *testing.T) {
	img := richImage(t)
	fsys := openImage(t, img)
	walk := func(path string) uint64 {
		t.Helper()
		ino := fsys.Root()
		for _, c := range strings.Split(path, "/") {
			var err error
			if ino, err = fsys.Lookup(ino, c); err != nil {
				t.Fatalf("lookup %s: %v", path, err)
			}
		}
		return ino
	}
	for _, l := range richLinks {
		got, err := fsys.Readlink(walk(l.path))
		if err != nil || got != l.want {
			t.Errorf("%s: target %q, %v; want %q", l.path, got, err, l.want)
		}
	}
	root, err := fsys.ReadDir(fsys.Root())
	must(t, err)
	for _, e := range root {
		if strings.HasPrefix(e.Name, "$") || e.Name == "LONGFI~1.TXT" {
			t.Errorf("root lists %q", e.Name)
		}
	}
	for _, n := range []string{"$MFT", "$Extend", "LONGFI~1.TXT", "."} {
		if _, err := fsys.Lookup(fsys.Root(), n); !errors.Is(err, guest.ErrNotFound) {
			t.Errorf("Lookup %q: %v, want ErrNotFound", n, err)
		}
	}
	for ino := uint64(0); ino < firstUser; ino++ {
		if _, err := fsys.Stat(ino); ino != RootIno && !errors.Is(err, guest.ErrNotFound) {
			t.Errorf("Stat of metadata record %d: %v", ino, err)
		}
	}
	if a, b, c := walk("f4096"), walk("hardlink"), walk("a/b/hardlink2"); a != b || a != c {
		t.Errorf("hard links have inodes %d, %d, %d", a, b, c)
	}
	if a, _ := fsys.Stat(walk("hardlink")); a.Nlink != 3 {
		t.Errorf("hard link count %d, want 3", a.Nlink)
	}
	if a, _ := fsys.Stat(walk("Long File Name.txt")); a.Nlink != 1 {
		t.Errorf("a file with a DOS alias has %d links, want 1", a.Nlink)
	}
	// The attribute lists the tree was built to need.
	for _, p := range []string{"frag", "streams"} {
		in, err := fsys.inode(walk(p))
		must(t, err)
		if in.cost <= 512+int(fsys.bt.recordSize) {
			t.Errorf("%s has no extension records; the test does not test attribute lists", p)
		}
	}
	frag, err := fsys.inode(walk("frag"))
	must(t, err)
	if len(frag.data.runs) < 2000 {
		t.Errorf("frag has %d runs", len(frag.data.runs))
	}
	// f700 has a 100000-byte stream "huge", too large for an xattr.
	f700 := walk("f700")
	if x, err := fsys.ListXattr(f700); err != nil || len(x) != 0 {
		t.Errorf("f700 lists xattrs %q, %v", x, err)
	}
	if _, err := fsys.GetXattr(f700, "user.huge"); !errors.Is(err, guest.ErrNoXattr) {
		t.Errorf("f700 user.huge: %v", err)
	}
	if in, err := fsys.inode(f700); err != nil || len(in.named) != 1 || in.named[0].size != 100000 {
		t.Errorf("f700 does not hold the stream the test made: %v", err)
	}
	x, err := fsys.ListXattr(walk("streams"))
	if err != nil || len(x) != 40 {
		t.Errorf("streams: %d xattrs, %v", len(x), err)
	}
}

// TestAgainstTools compares with the ntfsprogs tools, which read the
// image without mounting it: ntfsls for names, ntfscat for contents and
// streams, ntfsinfo for MFT record numbers.
func TestAgainstTools(t *testing.T) {
	img := richImage(t)
	fsys := openImage(t, img)
	for _, dir := range []string{"/", "/a", "/a/b", "/comp", "/many"} {
		ino := fsys.Root()
		for _, c := range strings.Split(strings.Trim(dir, "/"), "/") {
			if c != "" {
				var err error
				ino, err = fsys.Lookup(ino, c)
				must(t, err)
			}
		}
		ents, err := fsys.ReadDir(ino)
		must(t, err)
		var got []string
		for _, e := range ents {
			got = append(got, e.Name)
		}
		var want []string
		for _, l := range strings.Split(string(toolOutput(t, "ntfsls", "-p", dir, img)), "\n") {
			if l != "" && l != "." && l != ".." {
				want = append(want, l)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: names differ:\n ours   %q\n ntfsls %q", dir, got, want)
		}
		if dir == "/many" {
			continue
		}
		for _, e := range ents {
			path := strings.TrimSuffix(dir, "/") + "/" + e.Name
			a, err := fsys.Stat(e.Ino)
			must(t, err)
			info := string(toolOutput(t, "ntfsinfo", "-F", path, img))
			if !strings.Contains(info, "from mft record "+uitoa(e.Ino)+" ") {
				t.Errorf("%s: inode %d, ntfsinfo says otherwise", path, e.Ino)
			}
			if a.Mode&syscall.S_IFMT != syscall.S_IFREG || a.Size > 16<<20 {
				continue
			}
			want := toolOutput(t, "ntfscat", img, path)
			if got := readAll(t, fsys, e.Ino, a.Size); !bytes.Equal(got, want) {
				t.Errorf("%s: content differs from ntfscat's (%d and %d bytes)", path, len(got), len(want))
			}
			names, err := fsys.ListXattr(e.Ino)
			must(t, err)
			for _, n := range names {
				v, err := fsys.GetXattr(e.Ino, n)
				must(t, err)
				want := toolOutput(t, "ntfscat", "-a", "0x80", "-n", strings.TrimPrefix(n, "user."), img, path)
				if !bytes.Equal(v, want) {
					t.Errorf("%s: stream %s differs from ntfscat's", path, n)
				}
			}
		}
	}
}

func uitoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestRandomReads reads compressed, sparse and fragmented files at
// random offsets, from several goroutines at once, and compares with
// ntfscat.
func TestRandomReads(t *testing.T) {
	img := richImage(t)
	fsys := openImage(t, img)
	paths := []string{"comp/text", "comp/zeros", "comp/random", "comp/mixed", "comp/sparse", "sparse", "frag", "f1048699", "f700"}
	type file struct {
		path string
		ino  uint64
		want []byte
	}
	var files []file
	for _, p := range paths {
		ino := fsys.Root()
		for _, c := range strings.Split(p, "/") {
			var err error
			ino, err = fsys.Lookup(ino, c)
			must(t, err)
		}
		files = append(files, file{p, ino, toolOutput(t, "ntfscat", img, "/"+p)})
	}
	errs := make(chan error, 8)
	for g := range 4 {
		go func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range 300 {
				f := files[r.IntN(len(files))]
				off := r.IntN(len(f.want) + 100)
				n := 1 + r.IntN(200000)
				buf := make([]byte, n)
				got, err := fsys.ReadAt(f.ino, buf, int64(off))
				wantN := max(0, min(n, len(f.want)-off))
				if got != wantN || (err != nil && !errors.Is(err, io.EOF)) || (got < n && !errors.Is(err, io.EOF)) {
					errs <- errors.New(f.path + ": read " + uitoa(uint64(n)) + " at " + uitoa(uint64(off)) + ": n=" + uitoa(uint64(got)) + " err " + errString(err))
					return
				}
				if !bytes.Equal(buf[:got], f.want[off:off+got]) {
					errs <- errors.New(f.path + ": wrong bytes at " + uitoa(uint64(off)))
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// The huge sparse file: its data where ntfscat would have to write 3 GiB.
	ino, err := fsys.Lookup(fsys.Root(), "huge")
	must(t, err)
	a, err := fsys.Stat(ino)
	must(t, err)
	if a.Size != 3<<30 || a.Blocks > 100 {
		t.Errorf("huge: size %d, %d blocks", a.Size, a.Blocks)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}

// TestWSL compares the special files ntfs-3g writes as WSL reparse
// points (special_files=wsl) with its mount.
func TestWSL(t *testing.T) {
	img := mkntfs(t, 8<<20, 4096)
	mnt, unmount := mountImage(t, img, "special_files=wsl")
	buildWSL(t, mnt)
	unmount()
	fsys := openImage(t, img)
	mnt, _ = mountImage(t, img, "ro")
	if n := compareTree(t, fsys, mnt); n != 9 {
		t.Errorf("compared %d files, want 9", n)
	}
	kinds := map[string]uint32{"rel": syscall.S_IFLNK, "abs": syscall.S_IFLNK, "fifo": syscall.S_IFIFO,
		"chr": syscall.S_IFCHR, "blk": syscall.S_IFBLK, "sock": syscall.S_IFSOCK}
	for name, want := range kinds {
		ino, err := fsys.Lookup(fsys.Root(), name)
		must(t, err)
		in, err := fsys.inode(ino)
		must(t, err)
		a, err := fsys.Stat(ino)
		must(t, err)
		if in.fileAttrs&faReparse == 0 || a.Mode&syscall.S_IFMT != want {
			t.Errorf("%s: attributes %#x, mode %o: not a WSL reparse point of type %o", name, in.fileAttrs, a.Mode, want)
		}
	}
}

// TestClusterSizes reads volumes with small and large clusters: with 64
// KiB clusters index blocks are smaller than a cluster and their VCNs
// count 512-byte units.
func TestClusterSizes(t *testing.T) {
	for _, cs := range []int{512, 65536} {
		t.Run(strconv.Itoa(cs), func(t *testing.T) {
			img := mkntfs(t, 40<<20, cs)
			mnt, unmount := mountImage(t, img)
			r := rand.New(rand.NewPCG(3, uint64(cs)))
			must(t, os.Mkdir(filepath.Join(mnt, "many"), 0o755))
			for i := range 400 {
				writeFile(t, filepath.Join(mnt, "many", "a-long-file-name-number-"+strconv.Itoa(i)), randBytes(r, i*37))
			}
			writeFile(t, filepath.Join(mnt, "big"), randBytes(r, 3<<20+17))
			f, err := os.Create(filepath.Join(mnt, "sparse"))
			must(t, err)
			_, err = f.WriteAt(randBytes(r, 70000), 2<<20)
			must(t, err)
			must(t, f.Close())
			unmount()
			fsys := openImage(t, img)
			if fsys.ClusterSize() != uint64(cs) {
				t.Fatalf("cluster size %d", fsys.ClusterSize())
			}
			mnt, _ = mountImage(t, img, "ro")
			if n := compareTree(t, fsys, mnt); n != 403 {
				t.Errorf("compared %d files, want 403", n)
			}
		})
	}
}

// TestConcurrent calls every method from several goroutines at once on
// a fresh reader (so caches fill while others read) and compares with
// what one goroutine saw; run with -race.
func TestConcurrent(t *testing.T) {
	img := richImage(t)
	type result struct {
		attrs  []guest.Attr
		digest []string
	}
	snapshot := func(fsys *FS) (result, error) {
		var r result
		queue := []uint64{fsys.Root()}
		for len(queue) > 0 {
			ino := queue[0]
			queue = queue[1:]
			ents, err := fsys.ReadDir(ino)
			if err != nil {
				return r, err
			}
			for _, e := range ents {
				if _, err := fsys.Lookup(ino, e.Name); err != nil {
					return r, err
				}
				a, err := fsys.Stat(e.Ino)
				if err != nil {
					return r, err
				}
				r.attrs = append(r.attrs, a)
				x, _ := fsys.ListXattr(e.Ino)
				for _, n := range x {
					v, err := fsys.GetXattr(e.Ino, n)
					if err != nil {
						return r, err
					}
					r.digest = append(r.digest, n+":"+strconv.Itoa(len(v)))
				}
				switch a.Mode & syscall.S_IFMT {
				case syscall.S_IFDIR:
					queue = append(queue, e.Ino)
				case syscall.S_IFLNK:
					l, err := fsys.Readlink(e.Ino)
					if err != nil {
						return r, err
					}
					r.digest = append(r.digest, l)
				case syscall.S_IFREG:
					buf := make([]byte, 70000)
					n, err := fsys.ReadAt(e.Ino, buf, int64(a.Size/3))
					if err != nil && !errors.Is(err, io.EOF) {
						return r, err
					}
					s, en, err := fsys.NextData(e.Ino, 0)
					if err != nil {
						return r, err
					}
					ext, err := fsys.MapFile(nil, e.Ino, 0, 1<<20)
					if err != nil {
						return r, err
					}
					r.digest = append(r.digest, string(buf[:min(n, 64)]), strconv.FormatInt(s, 10)+"-"+strconv.FormatInt(en, 10), strconv.Itoa(len(ext)))
				}
			}
		}
		return r, nil
	}
	want, err := snapshot(openImage(t, img))
	must(t, err)
	fsys := openImage(t, img)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			got, err := snapshot(fsys)
			if err == nil && (!slices.Equal(got.attrs, want.attrs) || !slices.Equal(got.digest, want.digest)) {
				err = errors.New("a concurrent walk saw something else")
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
