package ntfs

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"

	"golang.org/x/sys/unix"
)

// needTool skips the test when an outside tool is missing, except under
// CI=true where a missing tool is a failure.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("tool %s missing: %v", name, err)
	}
	t.Skipf("tool %s missing: %v", name, err)
	return ""
}

func runTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	needTool(t, name)
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// toolOutput runs a tool and returns its standard output only.
func toolOutput(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	needTool(t, name)
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

// mkntfs makes an empty NTFS image of size bytes with the given cluster
// size in a temporary directory.
func mkntfs(t testing.TB, size int64, cluster int) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "ntfs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	runTool(t, "mkntfs", "-q", "-F", "-f", "-c", strconv.Itoa(cluster), "-L", "cairn", img)
	return img
}

// needFUSE skips the test without /dev/fuse, except under CI=true.
func needFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no FUSE: %v", err)
		}
		t.Skipf("no FUSE: %v", err)
	}
}

// fuseMu serializes ntfs-3g mounts of one test binary: mounting is cheap,
// but several daemons writing at once only slow the shared machine.
var fuseMu sync.Mutex

// mountImage mounts img with ntfs-3g (a FUSE mount of the image file: no
// loop device) and returns the mount point and the function that
// unmounts it and waits for ntfs-3g to have written everything back.
func mountImage(t testing.TB, img string, opts ...string) (string, func()) {
	t.Helper()
	needTool(t, "ntfs-3g")
	needFUSE(t)
	fuseMu.Lock()
	mnt := t.TempDir()
	o := append([]string{"no_detach"}, opts...)
	cmd := exec.Command("ntfs-3g", "-o", strings.Join(o, ","), img, mnt)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		fuseMu.Unlock()
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	root, _ := os.Stat(filepath.Dir(mnt))
	for deadline := time.Now().Add(20 * time.Second); ; {
		if st, err := os.Stat(mnt); err == nil && st.Sys().(*syscall.Stat_t).Dev != root.Sys().(*syscall.Stat_t).Dev {
			break
		}
		select {
		case err := <-exited:
			fuseMu.Unlock()
			t.Fatalf("ntfs-3g %s: %v\n%s", img, err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			fuseMu.Unlock()
			t.Fatalf("ntfs-3g %s: not mounted after 20s\n%s", img, out.String())
		}
	}
	var once sync.Once
	unmount := func() {
		once.Do(func() {
			defer fuseMu.Unlock()
			if b, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v\n%s", mnt, err, b)
				_ = exec.Command("umount", "-l", mnt).Run()
			}
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				t.Errorf("ntfs-3g did not exit after umount")
				_ = cmd.Process.Kill()
			}
		})
	}
	t.Cleanup(unmount)
	return mnt, unmount
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// textBytes is compressible data: words from a small vocabulary.
func textBytes(r *rand.Rand, n int) []byte {
	words := []string{"alpha ", "beta ", "gamma ", "delta\n", "epsilon ", "zeta, "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

func utf16le(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

// winLinkReparse builds the reparse data of a Windows symlink (junction
// false) or a junction, as system.ntfs_reparse_data takes it.
func winLinkReparse(target string, junction, relative bool) []byte {
	le := binary.LittleEndian
	sub := utf16le(target)
	print := utf16le(strings.TrimPrefix(target, `\??\`))
	var d []byte
	d = le.AppendUint16(d, 0)                  // substitute name offset
	d = le.AppendUint16(d, uint16(len(sub)))   // substitute name length
	d = le.AppendUint16(d, uint16(len(sub)+2)) // print name offset
	d = le.AppendUint16(d, uint16(len(print))) // print name length
	tag := uint32(tagMountPoint)
	if !junction {
		tag = tagSymlink
		flags := uint32(0)
		if relative {
			flags = symlinkFlagRelPath
		}
		d = le.AppendUint32(d, flags)
	}
	d = append(d, sub...)
	d = append(d, 0, 0)
	d = append(d, print...)
	d = append(d, 0, 0)
	var b []byte
	b = le.AppendUint32(b, tag)
	b = le.AppendUint16(b, uint16(len(d)))
	b = le.AppendUint16(b, 0)
	return append(b, d...)
}

func setReparse(t testing.TB, path string, data []byte) {
	t.Helper()
	must(t, unix.Setxattr(path, "system.ntfs_reparse_data", data, 0))
}

// setAttrib sets the Windows file attributes of path through ntfs-3g.
func setAttrib(t testing.TB, path string, attrs uint32) {
	t.Helper()
	v := binary.BigEndian.AppendUint32(nil, attrs)
	must(t, unix.Setxattr(path, "system.ntfs_attrib_be", v, 0))
}

// linkSpec is a Windows link the rich tree holds: where it is, and the
// target Readlink must give for it.
type linkSpec struct {
	path, want string
}

// richLinks are the Windows symlinks and junctions buildRich makes,
// with the targets this reader promises (see Readlink).
var richLinks = []linkSpec{
	{"junc", "a/b"},
	{"a/jsub", "../a/b/c"},
	{"abslink", "a/b/c/d/deep"},
	{"a/rellink", "../small"},
	{"rooted", "many"},
	{"a/b/dangling", "../../.NTFS-3G/C:/nowhere/at/all"},
	{"a/reldangle", "../gone/x"},
	{"voljunc", ".NTFS-3G/Volume{01234567-89ab-cdef-0123-456789abcdef}/"},
	{"dedup", "unsupported reparse tag 0x80000013"},
}

// ntfs3gBadLinks are the links whose targets ntfs-3g refuses (a file
// link to a directory, a relative target not found) and shows as
// "unsupported reparse tag", where this reader gives the target.
var ntfs3gBadLinks = map[string]bool{"rooted": true, "a/reldangle": true}

// buildRich fills the mounted volume mnt with the kinds of files an NTFS
// reader must show. It returns the seeds it used for a few contents.
func buildRich(t testing.TB, mnt string, manyEntries int) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	p := func(s string) string { return filepath.Join(mnt, s) }
	for _, n := range []int{0, 1, 700, 4095, 4096, 4097, 100000, 1<<20 + 123} {
		writeFile(t, p("f"+strconv.Itoa(n)), randBytes(r, n))
	}
	writeFile(t, p("small"), []byte("hello, ntfs\n"))
	// Sparse: data, a hole, data, a hole, a tail; and a huge one.
	f, err := os.Create(p("sparse"))
	must(t, err)
	for _, off := range []int64{0, 1 << 20, 3<<20 + 5} {
		_, err := f.WriteAt(randBytes(r, 8192), off)
		must(t, err)
	}
	must(t, f.Truncate(5<<20))
	must(t, f.Close())
	f, err = os.Create(p("huge"))
	must(t, err)
	for _, off := range []int64{100, 2<<30 + 12345, 3<<30 - 3000} {
		_, err := f.WriteAt(randBytes(r, 3000), off)
		must(t, err)
	}
	must(t, f.Close())
	// Fragmented: so many runs that the runlist spills into extension
	// records through an attribute list.
	f, err = os.Create(p("frag"))
	must(t, err)
	for i := range 1200 {
		_, err := f.WriteAt(randBytes(r, 4096), int64(i)*3*4096)
		must(t, err)
	}
	must(t, f.Close())
	// Compressed: new files in a directory with the compressed attribute.
	must(t, os.Mkdir(p("comp"), 0o755))
	setAttrib(t, p("comp"), faCompressed|0x10)
	writeFile(t, p("comp/text"), textBytes(r, 300000))
	writeFile(t, p("comp/zeros"), append(make([]byte, 300000), "end"...))
	writeFile(t, p("comp/random"), randBytes(r, 150000))
	mixed := append(textBytes(r, 70000), randBytes(r, 70000)...)
	mixed = append(mixed, make([]byte, 200000)...)
	writeFile(t, p("comp/mixed"), append(mixed, textBytes(r, 5000)...))
	f, err = os.Create(p("comp/sparse"))
	must(t, err)
	_, err = f.WriteAt(textBytes(r, 10000), 1<<20)
	must(t, err)
	must(t, f.Truncate(3<<20))
	must(t, f.Close())
	// Directories: deep, and one large enough for a B+tree of index
	// blocks, half of its names deleted again.
	must(t, os.MkdirAll(p("a/b/c/d"), 0o755))
	writeFile(t, p("a/b/c/d/deep"), []byte("deep\n"))
	must(t, os.Mkdir(p("many"), 0o755))
	for i := range manyEntries {
		writeFile(t, p("many/entry-with-a-longish-name-"+strconv.Itoa(i)), []byte(strconv.Itoa(i)))
	}
	for i := 0; i < manyEntries; i += 2 {
		must(t, os.Remove(p("many/entry-with-a-longish-name-"+strconv.Itoa(i))))
	}
	// Names.
	for _, n := range []string{"héllo wörld", "日本語のファイル", "emoji-😀.txt", "UPPER", "upper", strings.Repeat("n", 255)} {
		writeFile(t, p(n), []byte(n))
	}
	// Hard links, also across directories.
	must(t, os.Link(p("f4096"), p("hardlink")))
	must(t, os.Link(p("f4096"), p("a/b/hardlink2")))
	// A DOS 8.3 alias, which listings hide.
	writeFile(t, p("Long File Name.txt"), []byte("long"))
	must(t, unix.Setxattr(p("Long File Name.txt"), "system.ntfs_dos_name", []byte("LONGFI~1.TXT"), 0))
	// Hidden and read-only files are shown as any other.
	writeFile(t, p("hidden"), []byte("h"))
	setAttrib(t, p("hidden"), faHidden|0x20)
	writeFile(t, p("readonly"), []byte("ro"))
	setAttrib(t, p("readonly"), faReadOnly|0x20)
	// Interix symlinks and special files (ntfs-3g's default kind).
	must(t, os.Symlink("small", p("symlink")))
	must(t, os.Symlink("a/b/c", p("dirsymlink")))
	must(t, os.Symlink("does/not/exist", p("danglink")))
	must(t, os.Symlink(strings.Repeat("long-target/", 40)+"end", p("longlink")))
	must(t, unix.Mkfifo(p("fifo"), 0o644))
	must(t, unix.Mknod(p("chr"), syscall.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(p("blk"), syscall.S_IFBLK|0o600, int(unix.Mkdev(8, 17))))
	// Windows symlinks and junctions, set as raw reparse data.
	for _, d := range []string{"junc", "a/jsub", "voljunc"} {
		must(t, os.Mkdir(p(d), 0o755))
	}
	setReparse(t, p("junc"), winLinkReparse(`\??\C:\A\b`, true, false))
	setReparse(t, p("a/jsub"), winLinkReparse(`\??\c:\a\B\C`, true, false))
	setReparse(t, p("voljunc"), winLinkReparse(`\??\Volume{01234567-89ab-cdef-0123-456789abcdef}\`, true, false))
	for _, l := range []struct {
		path, target string
		rel          bool
	}{
		{"abslink", `\??\C:\a\b\c\d\DEEP`, false},
		{"a/rellink", `..\SMALL`, true},
		{"rooted", `\Many`, true},
		{"a/b/dangling", `C:\nowhere\at\all`, true},
		{"a/reldangle", `..\gone\x`, true},
	} {
		writeFile(t, p(l.path), nil)
		setReparse(t, p(l.path), winLinkReparse(l.target, false, l.rel))
	}
	writeFile(t, p("dedup"), nil)
	dedup := binary.LittleEndian.AppendUint32(nil, 0x80000013)
	dedup = binary.LittleEndian.AppendUint16(dedup, 8)
	dedup = append(dedup, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8)
	setReparse(t, p("dedup"), dedup)
	// Alternate data streams, shown as user.* xattrs; enough of them on
	// one file to need an attribute list.
	must(t, unix.Setxattr(p("small"), "user.stream1", []byte("stream value"), 0))
	must(t, unix.Setxattr(p("small"), "user.empty", nil, 0))
	must(t, unix.Setxattr(p("small"), "user.big", randBytes(r, 60000), 0))
	must(t, unix.Setxattr(p("a"), "user.ondir", []byte("a directory's stream"), 0))
	writeFile(t, p("streams"), []byte("many streams"))
	for i := range 40 {
		name := "user.stream-with-a-rather-long-name-" + strconv.Itoa(i)
		must(t, unix.Setxattr(p("streams"), name, bytes.Repeat([]byte{byte(i)}, 20+i), 0))
	}
	// Times: one before 1970, one in the far future, with 100 ns parts.
	writeFile(t, p("old"), []byte("old"))
	must(t, os.Chtimes(p("old"), time.Date(1960, 5, 6, 7, 8, 9, 123456700, time.UTC), time.Date(1955, 1, 2, 3, 4, 5, 600, time.UTC)))
	writeFile(t, p("future"), []byte("future"))
	must(t, os.Chtimes(p("future"), time.Date(2200, 1, 1, 0, 0, 0, 100, time.UTC), time.Date(2100, 12, 31, 23, 59, 59, 999999900, time.UTC)))
}

// buildWSL fills mnt, mounted with special_files=wsl, with the special
// files WSL and ntfs-3g write as reparse points.
func buildWSL(t testing.TB, mnt string) {
	t.Helper()
	p := func(s string) string { return filepath.Join(mnt, s) }
	writeFile(t, p("target"), []byte("target"))
	must(t, os.Mkdir(p("d"), 0o755))
	must(t, os.Symlink("target", p("rel")))
	must(t, os.Symlink("/abs/path/elsewhere", p("abs")))
	must(t, os.Symlink("../target", p("d/up")))
	must(t, unix.Mkfifo(p("fifo"), 0o644))
	must(t, unix.Mknod(p("chr"), syscall.S_IFCHR|0o600, int(unix.Mkdev(4, 5))))
	must(t, unix.Mknod(p("blk"), syscall.S_IFBLK|0o600, int(unix.Mkdev(259, 3))))
	must(t, unix.Mknod(p("sock"), syscall.S_IFSOCK|0o600, 0))
}

// openImage opens the NTFS image file img, logging what the reader logs.
func openImage(t testing.TB, img string) *FS {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := Open(f, st.Size(), Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("Open %s: %v", img, err)
	}
	return fsys
}

// richImage builds (once per test binary) the rich image and returns a
// private copy's path.
var rich struct {
	once sync.Once
	img  []byte
	err  string
}

func richImage(t *testing.T) string {
	t.Helper()
	// Skip (or fail under CI) here, in each test, rather than inside the
	// once that builds the image.
	for _, tool := range []string{"mkntfs", "ntfs-3g", "ntfscp", "ntfsls", "ntfscat", "ntfsinfo"} {
		needTool(t, tool)
	}
	needFUSE(t)
	rich.once.Do(func() {
		// Built in a subtest-independent place: the image outlives t.
		dir, err := os.MkdirTemp("", "cairn-ntfs-")
		if err != nil {
			rich.err = err.Error()
			return
		}
		defer os.RemoveAll(dir)
		sub := &imgT{T: t, dir: dir}
		img := mkntfs(sub, 48<<20, 4096)
		mnt, unmount := mountImage(sub, img, "streams_interface=xattr")
		buildRich(sub, mnt, 800)
		unmount()
		// A stream over 64 KiB, which the xattr interface cannot carry:
		// ntfscp writes it without a mount.
		big := filepath.Join(dir, "bigstream")
		if err := os.WriteFile(big, randBytes(rand.New(rand.NewPCG(5, 5)), 100000), 0o644); err != nil {
			rich.err = err.Error()
			return
		}
		runTool(sub, "ntfscp", "-q", "-N", "huge", img, big, "/f700")
		if rich.img, err = os.ReadFile(img); err != nil {
			rich.err = err.Error()
		}
	})
	if rich.err != "" || rich.img == nil {
		t.Fatalf("rich image: %s", rich.err)
	}
	path := filepath.Join(t.TempDir(), "rich.img")
	must(t, os.WriteFile(path, rich.img, 0o644))
	return path
}

// imgT is the testing.T of the test that first builds a shared image,
// with TempDir pointing at a directory that outlives it.
type imgT struct {
	*testing.T
	dir string
	n   int
}

func (s *imgT) TempDir() string {
	s.n++
	d := filepath.Join(s.dir, strconv.Itoa(s.n))
	if err := os.Mkdir(d, 0o755); err != nil {
		s.Fatal(err)
	}
	return d
}
