package xfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

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
	cmd := exec.Command(name, args...)
	// mkfs.xfs refuses volumes under 300 MB unless it runs under fstests,
	// which it recognises by these variables.
	cmd.Env = append(os.Environ(), "TEST_DIR=1", "TEST_DEV=1", "QA_CHECK_FS=1", "TZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// xfsDB runs xfs_db read-only on img with one -c per command.
func xfsDB(t testing.TB, img string, cmds ...string) string {
	t.Helper()
	args := []string{"-r"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	return runTool(t, "xfs_db", append(args, img)...)
}

// xfsDBWrite runs xfs_db in expert mode, which writes.
func xfsDBWrite(t testing.TB, img string, cmds ...string) string {
	t.Helper()
	args := []string{"-x"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := runTool(t, "xfs_db", append(args, img)...)
	if strings.Contains(out, "rror") || strings.Contains(out, "invalid") || strings.Contains(out, "not found") {
		t.Fatalf("xfs_db %q:\n%s", cmds, out)
	}
	return out
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
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

func itoa(n int) string { return strconv.Itoa(n) }

// treeOpts shapes the source tree.
type treeOpts struct {
	manyEntries int // files in "many": a node directory with a btree block map
	midEntries  int // files in "mid": a leaf directory
	manyXattrs  int // attributes of "attrs": a node attribute fork
	special     bool
}

// xattrValue is the value xfs_db's attr_set writes: n times 'v'.
func xattrValue(n int) []byte { return bytes.Repeat([]byte("v"), n) }

// buildTree fills dir with the kinds of files an XFS reader must show.
// Everything mkfs.xfs cannot take from a protofile (sticky bits, hard
// links, holes, attributes) is made so that fixImage can reproduce it
// with xfs_db: attribute values are runs of 'v', holes block aligned.
func buildTree(t testing.TB, dir string, o treeOpts) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{0, 1, 59, 60, 61, 4095, 4096, 4097, 70000, 1<<20 + 123} {
		writeFile(t, filepath.Join(dir, "f"+itoa(n)), randBytes(r, n))
	}
	// Sparse: data, a hole, data, a hole, data, a trailing hole; and one
	// that starts with a hole.
	sparse := func(name string, size int64, offs ...int64) {
		f, err := os.Create(filepath.Join(dir, name))
		must(err)
		for _, off := range offs {
			_, err := f.WriteAt(randBytes(r, 8192), off)
			must(err)
		}
		must(f.Truncate(size))
		must(f.Close())
	}
	sparse("sparse", 5<<20, 0, 1<<20, 3<<20)
	sparse("sparse-lead", 200<<10, 64<<10)
	must(os.Symlink("f1", filepath.Join(dir, "fastlink")))
	must(os.Symlink(strings.Repeat("l", 100), filepath.Join(dir, "link100")))
	must(os.Symlink(strings.Repeat("long-target-component/", 40)+"end", filepath.Join(dir, "link1000")))
	must(os.MkdirAll(filepath.Join(dir, "a/b/c/d"), 0o755))
	writeFile(t, filepath.Join(dir, "a/b/c/d/deep"), []byte("deep\n"))
	must(os.Mkdir(filepath.Join(dir, "links"), 0o755))
	writeFile(t, filepath.Join(dir, "links/orig"), randBytes(r, 5000))
	must(os.Link(filepath.Join(dir, "links/orig"), filepath.Join(dir, "links/twin")))
	must(os.Link(filepath.Join(dir, "links/orig"), filepath.Join(dir, "a/b/hardlink")))
	for name, mode := range map[string]uint32{"m4755": 0o4755, "m0000": 0, "m0640": 0o640, "m2711": 0o2711, "m6755": 0o6755, "m1755": 0o1755} {
		p := filepath.Join(dir, name)
		writeFile(t, p, []byte(name))
		must(unix.Chmod(p, mode))
	}
	must(os.Mkdir(filepath.Join(dir, "sticky"), 0o755))
	must(unix.Chmod(filepath.Join(dir, "sticky"), 0o1777))
	must(os.Mkdir(filepath.Join(dir, "private"), 0o700))
	must(os.Mkdir(filepath.Join(dir, "empty"), 0o755))
	writeFile(t, filepath.Join(dir, "owned"), []byte("owned"))
	must(os.Lchown(filepath.Join(dir, "owned"), 1234, 5678))
	must(os.Lchown(filepath.Join(dir, "fastlink"), 70000, 80000))
	must(os.Lchown(filepath.Join(dir, "private"), 42, 43))
	// Attributes: short form in the inode, a leaf (a value too big for the
	// inode), a remote value, a node fork; user, trusted and security.
	// The source filesystem cannot hold them all (ext4 keeps one block of
	// attributes per inode), so they are listed in dir's xattrSpec file.
	spec := map[string][]string{}
	setx := func(path, name string, n int) {
		spec[path] = append(spec[path], name+"="+itoa(n))
	}
	setx("f1", "user.small", 1)
	setx("f1", "user.other", 12)
	setx("a", "user.dir", 8)
	setx("f4097", "user.big", 3000)
	setx("f4097", "trusted.t", 7)
	setx("f4097", "security.s", 5)
	writeFile(t, filepath.Join(dir, "xremote"), []byte("remote"))
	setx("xremote", "user.huge", 10000)
	setx("xremote", "user.tiny", 3)
	if o.manyXattrs > 0 {
		writeFile(t, filepath.Join(dir, "attrs"), []byte("attrs"))
		for i := range o.manyXattrs {
			setx("attrs", fmt.Sprintf("user.attribute-number-%04d", i), 20+i%50)
		}
	}
	if o.special {
		must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o640))
		must(unix.Mknod(filepath.Join(dir, "chr"), syscall.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
		must(unix.Mknod(filepath.Join(dir, "blk"), syscall.S_IFBLK|0o600, int(unix.Mkdev(259, 70000))))
	}
	many := func(name string, n int) {
		if n == 0 {
			return
		}
		d := filepath.Join(dir, name)
		must(os.Mkdir(d, 0o755))
		for i := range n {
			f, err := os.Create(filepath.Join(d, "entry-with-a-longish-name-"+itoa(i)))
			must(err)
			must(f.Close())
		}
	}
	many("many", o.manyEntries)
	many("mid", o.midEntries)
	var b strings.Builder
	for p, xs := range spec {
		b.WriteString(p + "\t" + strings.Join(xs, ",") + "\n")
	}
	writeFile(t, xattrSpecPath(dir), []byte(b.String()))
}

// xattrSpecPath is where buildTree lists the attributes the image must
// have: beside the tree, not in it.
func xattrSpecPath(dir string) string { return dir + ".xattrs" }

// xattrSpec reads that list: path -> attribute name -> value length.
func xattrSpec(t testing.TB, dir string) map[string]map[string]int {
	b, err := os.ReadFile(xattrSpecPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		p, xs, _ := strings.Cut(line, "\t")
		out[p] = map[string]int{}
		for _, x := range strings.Split(xs, ",") {
			name, n, _ := strings.Cut(x, "=")
			out[p][name], _ = strconv.Atoi(n)
		}
	}
	return out
}

// fixes is what mkfs.xfs -p cannot make, for fixImage to add with xfs_db.
type fixes struct {
	sticky map[string]uint32   // path -> full mode
	links  map[string]string   // placeholder path -> path of the first name
	sparse []string            // files with holes
	xattrs map[string][]string // path -> attr_set arguments
	order  []string            // paths of xattrs, in walk order
}

var protoTypes = map[uint32]byte{
	syscall.S_IFREG: '-', syscall.S_IFDIR: 'd', syscall.S_IFLNK: 'l',
	syscall.S_IFCHR: 'c', syscall.S_IFBLK: 'b', syscall.S_IFIFO: 'p',
}

// writeProto writes a mkfs.xfs protofile describing src and returns it
// with the fixes it leaves to xfs_db.
func writeProto(t testing.TB, src string) (string, *fixes) {
	t.Helper()
	spec := xattrSpec(t, src)
	empty := filepath.Join(t.TempDir(), "empty")
	writeFile(t, empty, nil)
	fx := &fixes{sticky: map[string]uint32{}, links: map[string]string{}, xattrs: map[string][]string{}}
	first := map[uint64]string{} // source inode -> first path
	var b strings.Builder
	b.WriteString("cairn-test\n0 0\n")
	var walk func(path, rel string, root bool)
	walk = func(path, rel string, root bool) {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			t.Fatal(err)
		}
		typ := st.Mode & syscall.S_IFMT
		mode := []byte{protoTypes[typ], '-', '-'}
		if st.Mode&syscall.S_ISUID != 0 {
			mode[1] = 'u'
		}
		if st.Mode&syscall.S_ISGID != 0 {
			mode[2] = 'g'
		}
		if st.Mode&syscall.S_ISVTX != 0 {
			fx.sticky[rel] = st.Mode
		}
		fields := []string{string(mode) + fmt.Sprintf("%03o", st.Mode&0o777), itoa(int(st.Uid)), itoa(int(st.Gid))}
		if !root {
			fields = append([]string{filepath.Base(path)}, fields...)
		}
		switch typ {
		case syscall.S_IFREG:
			if st.Nlink > 1 {
				if f, ok := first[st.Ino]; ok {
					fx.links[rel] = f
					path = empty
				} else {
					first[st.Ino] = rel
				}
			}
			fields = append(fields, path)
			if hole, _ := holeAt(t, path); path != empty && hole < st.Size {
				fx.sparse = append(fx.sparse, rel)
			}
		case syscall.S_IFLNK:
			target, err := os.Readlink(path)
			if err != nil {
				t.Fatal(err)
			}
			fields = append(fields, target)
		case syscall.S_IFCHR, syscall.S_IFBLK:
			fields = append(fields, itoa(int(unix.Major(st.Rdev))), itoa(int(unix.Minor(st.Rdev))))
		}
		if xs := spec[rel]; len(xs) > 0 {
			names := slices.Sorted(maps.Keys(xs))
			fx.order = append(fx.order, rel)
			for _, name := range names {
				ns, short, _ := strings.Cut(name, ".")
				flag := map[string]string{"user": "", "trusted": "-r ", "security": "-s "}[ns]
				fx.xattrs[rel] = append(fx.xattrs[rel], fmt.Sprintf("attr_set %s-v %d %s", flag, xs[name], short))
			}
		}
		b.WriteString(strings.Join(fields, " ") + "\n")
		if typ == syscall.S_IFDIR {
			ents, err := os.ReadDir(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				walk(filepath.Join(path, e.Name()), filepath.Join(rel, e.Name()), false)
			}
			b.WriteString("$\n")
		}
	}
	walk(src, "", true)
	b.WriteString("$\n")
	p := filepath.Join(t.TempDir(), "proto")
	writeFile(t, p, []byte(b.String()))
	if d := os.Getenv("XFS_DUMP_PROTO"); d != "" {
		writeFile(t, d, []byte(b.String()))
	}
	return p, fx
}

// holeAt returns the first hole of the file at path.
func holeAt(t testing.TB, path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Seek(0, unix.SEEK_HOLE)
}

// dataRanges returns the data ranges [start, end) of the file at path.
func dataRanges(t testing.TB, path string) [][2]int64 {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	var out [][2]int64
	for off := int64(0); off < st.Size(); {
		s, err := f.Seek(off, unix.SEEK_DATA)
		if err != nil {
			break
		}
		e, err := f.Seek(s, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, [2]int64{s, e})
		off = e
	}
	return out
}

// lsEntry is one line of xfs_db's ls.
type lsEntry struct {
	ino  uint64
	typ  string
	name string
}

var lsRE = regexp.MustCompile(`(?m)^\d+\s+(\d+)\s+(\S+)\s+0x[0-9a-f]+\s+\d+\s+(\S+) \(good\)$`)

// xfsLs lists directory dir of img with xfs_db, "." and ".." included.
func xfsLs(t testing.TB, img, dir string) []lsEntry {
	t.Helper()
	out := xfsDB(t, img, "ls "+dir)
	var ents []lsEntry
	for _, m := range lsRE.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		ents = append(ents, lsEntry{n, m[2], m[3]})
	}
	return ents
}

func xfsIno(t testing.TB, img, path string) uint64 {
	t.Helper()
	dir, name := filepath.Split("/" + path)
	for _, e := range xfsLs(t, img, dir) {
		if e.name == name {
			return e.ino
		}
	}
	t.Fatalf("xfs_db ls %s: no %s", dir, name)
	return 0
}

var bmapRE = regexp.MustCompile(`(?m)^(data|attr) offset (\d+) startblock (\d+) \((\d+)/(\d+)\) count (\d+) flag (\d)$`)

// bmapExtent is one line of xfs_db's bmap.
type bmapExtent struct {
	off, fsb, n uint64
	unwritten   bool
}

func xfsBmap(t testing.TB, img string, sel ...string) []bmapExtent {
	t.Helper()
	out := xfsDB(t, img, append(sel, "bmap -d")...)
	var exts []bmapExtent
	for _, m := range bmapRE.FindAllStringSubmatch(out, -1) {
		off, _ := strconv.ParseUint(m[2], 10, 64)
		fsb, _ := strconv.ParseUint(m[3], 10, 64)
		n, _ := strconv.ParseUint(m[6], 10, 64)
		exts = append(exts, bmapExtent{off, fsb, n, m[7] == "1"})
	}
	return exts
}

// image is a built XFS image with what the tests need to know of it.
type image struct {
	path string
	v5   bool
	bs   int64
}

func (im *image) fork() string {
	if im.v5 {
		return "u3"
	}
	return "u"
}

// mkfs builds an XFS image of src with mkfs.xfs -p and the given options,
// then adds with xfs_db what the protofile cannot say.
func mkfs(t testing.TB, src, size string, opts ...string) *image {
	t.Helper()
	proto, fx := writeProto(t, src)
	img := filepath.Join(t.TempDir(), "fs.img")
	args := append([]string{"-q", "-f", "-p", proto, "-d", "file,name=" + img + ",size=" + size}, opts...)
	runTool(t, "mkfs.xfs", args...)
	sb := xfsDB(t, img, "sb 0", "print versionnum blocksize")
	im := &image{path: img}
	im.v5 = regexp.MustCompile(`versionnum = 0x[0-9a-f]*5\b`).MatchString(sb)
	m := regexp.MustCompile(`blocksize = (\d+)`).FindStringSubmatch(sb)
	im.bs, _ = strconv.ParseInt(m[1], 10, 64)
	fixImage(t, im, src, fx)
	return im
}

var sfNameRE = regexp.MustCompile(`(?m)^(u3?\.sfdir[23])\.list\[(\d+)\]\.name = "(.*)"$`)

// fixImage adds sticky bits, hard links, holes and attributes with
// xfs_db, so the image matches src.
func fixImage(t testing.TB, im *image, src string, fx *fixes) {
	t.Helper()
	var cmds []string
	for p, mode := range fx.sticky {
		cmds = append(cmds, "path /"+p, fmt.Sprintf("write core.mode 0%o", mode))
	}
	for _, p := range fx.order {
		cmds = append(cmds, "path /"+p)
		cmds = append(cmds, fx.xattrs[p]...)
	}
	// Hard links: point the placeholder's entry at the first name's inode
	// (the placeholder inode is left orphaned) and set the link count.
	nlink := map[string]int{}
	for ph, first := range fx.links {
		dir, name := filepath.Split(ph)
		out := xfsDB(t, im.path, "path /"+dir, "print")
		idx := ""
		field := ""
		for _, m := range sfNameRE.FindAllStringSubmatch(out, -1) {
			if m[3] == name {
				field, idx = m[1], m[2]
			}
		}
		if idx == "" {
			t.Fatalf("directory /%s is not short form or has no %s:\n%s", dir, name, out)
		}
		cmds = append(cmds, "path /"+dir, fmt.Sprintf("write %s.list[%s].inumber.i4 %d", field, idx, xfsIno(t, im.path, first)))
		nlink[first]++
	}
	for first, n := range nlink {
		cmds = append(cmds, "path /"+first, fmt.Sprintf("write core.nlinkv2 %d", n+1))
	}
	// Holes: keep only the blocks that hold data in src.
	for _, p := range fx.sparse {
		exts := xfsBmap(t, im.path, "path /"+p)
		phys := func(lblk uint64) (uint64, uint64) { // fsb, blocks left in its extent
			for _, e := range exts {
				if lblk >= e.off && lblk < e.off+e.n {
					return e.fsb + lblk - e.off, e.off + e.n - lblk
				}
			}
			t.Fatalf("%s: block %d unmapped", p, lblk)
			return 0, 0
		}
		var recs [][3]uint64
		for _, r := range dataRanges(t, filepath.Join(src, p)) {
			bs := uint64(im.bs)
			for l := uint64(r[0]) / bs; l < (uint64(r[1])+bs-1)/bs; {
				fsb, left := phys(l)
				n := min(left, (uint64(r[1])+bs-1)/bs-l)
				recs = append(recs, [3]uint64{l, fsb, n})
				l += n
			}
		}
		cmds = append(cmds, "path /"+p, fmt.Sprintf("write core.nextents %d", len(recs)))
		for i, r := range recs {
			f := fmt.Sprintf("%s.bmx[%d]", im.fork(), i)
			cmds = append(cmds, fmt.Sprintf("write %s.startoff %d", f, r[0]),
				fmt.Sprintf("write %s.startblock %d", f, r[1]),
				fmt.Sprintf("write %s.blockcount %d", f, r[2]))
		}
	}
	if len(cmds) > 0 {
		xfsDBWrite(t, im.path, cmds...)
	}
	if im.v5 {
		fixRemoteSymlinks(t, im, src)
	}
}

var convertRE = regexp.MustCompile(`\((\d+)\)`)

// byteOf returns the byte offset of filesystem block fsb, as xfs_db
// converts it.
func byteOf(t testing.TB, img string, fsb uint64) int64 {
	t.Helper()
	out := xfsDB(t, img, fmt.Sprintf("convert fsblock %d byte", fsb))
	m := convertRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("xfs_db convert: %s", out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// fixRemoteSymlinks gives the remote symlinks of a v5 image the header
// the kernel writes before the target (magic, offset, length, CRC, UUID,
// owner, sector): mkfs.xfs 6.1 writes the bare target from a protofile,
// which xfs_repair then rejects. xfs_db checks the result.
func fixRemoteSymlinks(t testing.TB, im *image, src string) {
	t.Helper()
	f, err := os.OpenFile(im.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var uuid [16]byte
	if _, err := f.ReadAt(uuid[:], 0x20); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		exts := xfsBmap(t, im.path, "path /"+rel)
		if len(exts) == 0 {
			return nil // kept in the inode
		}
		target, _ := os.Readlink(path)
		if len(exts) != 1 || 56+int64(len(target)) > int64(exts[0].n)*im.bs {
			t.Fatalf("%s: symlink extents %v cannot hold a header", rel, exts)
		}
		off := byteOf(t, im.path, exts[0].fsb)
		blk := make([]byte, int64(exts[0].n)*im.bs)
		be := binary.BigEndian
		be.PutUint32(blk, 0x58534C4D)
		be.PutUint32(blk[8:], uint32(len(target)))
		copy(blk[16:], uuid[:])
		be.PutUint64(blk[32:], xfsIno(t, im.path, rel))
		be.PutUint64(blk[40:], uint64(off/512))
		copy(blk[56:], target)
		binary.LittleEndian.PutUint32(blk[12:], crc32.Checksum(blk, crc32.MakeTable(crc32.Castagnoli)))
		if _, err := f.WriteAt(blk, off); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if out := xfsDB(t, im.path, "path /"+rel, "dblock 0", "type symlink", "print crc"); !strings.Contains(out, "(correct)") {
			t.Fatalf("%s: xfs_db does not take the crafted symlink block: %s", rel, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

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
	fsys, err := OpenOptions(f, st.Size(), Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("Open %s: %v", img, err)
	}
	return fsys
}

// sortedNames returns the names of a source directory, sorted.
func sortedNames(t testing.TB, dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}
