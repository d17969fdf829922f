package ext4

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// treeOpts shapes the source tree.
type treeOpts struct {
	manyEntries int  // files in the "many" directory
	bigSparse   bool // a 5 GiB sparse file
	special     bool // fifo and device nodes (needs root)
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

// buildTree fills dir with the kinds of files an ext4 reader must show.
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
	// Sparse: data, a hole, data, a hole, a tail.
	f, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	for _, off := range []int64{0, 1 << 20, 3<<20 + 5} {
		_, err := f.WriteAt(randBytes(r, 8192), off)
		must(err)
	}
	must(f.Truncate(5 << 20))
	must(f.Close())
	if o.bigSparse {
		f, err := os.Create(filepath.Join(dir, "huge"))
		must(err)
		for _, off := range []int64{100, 4<<30 + 12345, 5<<30 - 3000} {
			_, err := f.WriteAt(randBytes(r, 3000), off)
			must(err)
		}
		must(f.Close())
	}
	must(os.Symlink("f1", filepath.Join(dir, "fastlink")))
	long := strings.Repeat("a-rather-long-target-component/", 5) + "end"
	must(os.Symlink(long, filepath.Join(dir, "slowlink")))
	must(os.Link(filepath.Join(dir, "f4096"), filepath.Join(dir, "hardlink")))
	must(os.MkdirAll(filepath.Join(dir, "a/b/c/d"), 0o755))
	writeFile(t, filepath.Join(dir, "a/b/c/d/deep"), []byte("deep\n"))
	must(os.Link(filepath.Join(dir, "f4096"), filepath.Join(dir, "a/b/hardlink2")))
	for name, mode := range map[string]uint32{"m4755": 0o4755, "m0000": 0, "m0640": 0o640, "m2711": 0o2711} {
		p := filepath.Join(dir, name)
		writeFile(t, p, []byte(name))
		must(unix.Chmod(p, mode))
	}
	must(os.Mkdir(filepath.Join(dir, "sticky"), 0o755))
	must(unix.Chmod(filepath.Join(dir, "sticky"), 0o1777))
	writeFile(t, filepath.Join(dir, "owned"), []byte("owned"))
	must(os.Lchown(filepath.Join(dir, "owned"), 1234, 5678))
	must(os.Lchown(filepath.Join(dir, "fastlink"), 70000, 80000))
	// Extended attributes: small ones fit in the inode, a big one does not.
	must(unix.Setxattr(filepath.Join(dir, "f1"), "user.small", []byte("v"), 0))
	must(unix.Setxattr(filepath.Join(dir, "f1"), "user.other", []byte("second value"), 0))
	must(unix.Setxattr(filepath.Join(dir, "a"), "user.dir", []byte("on a dir"), 0))
	must(unix.Setxattr(filepath.Join(dir, "f4097"), "user.big", bytes.Repeat([]byte("x"), 700), 0))
	must(unix.Setxattr(filepath.Join(dir, "f4097"), "trusted.t", []byte("trusted"), 0))
	// A POSIX ACL, in the xattr form (version 2, 8-byte entries).
	acl := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range [][3]uint32{{0x01, 6, 0xFFFFFFFF}, {0x02, 4, 1234}, {0x04, 4, 0xFFFFFFFF}, {0x10, 4, 0xFFFFFFFF}, {0x20, 0, 0xFFFFFFFF}} {
		acl = binary.LittleEndian.AppendUint16(acl, uint16(e[0]))
		acl = binary.LittleEndian.AppendUint16(acl, uint16(e[1]))
		acl = binary.LittleEndian.AppendUint32(acl, e[2])
	}
	writeFile(t, filepath.Join(dir, "acl"), []byte("acl"))
	must(unix.Setxattr(filepath.Join(dir, "acl"), "system.posix_acl_access", acl, 0))
	if o.special {
		must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o640))
		must(unix.Mknod(filepath.Join(dir, "chr"), syscall.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
		must(unix.Mknod(filepath.Join(dir, "blk"), syscall.S_IFBLK|0o600, int(unix.Mkdev(259, 70000))))
	}
	if o.manyEntries > 0 {
		many := filepath.Join(dir, "many")
		must(os.Mkdir(many, 0o755))
		for i := range o.manyEntries {
			f, err := os.Create(filepath.Join(many, "entry-with-a-longish-name-"+itoa(i)))
			must(err)
			must(f.Close())
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// mkfs builds an image of src with the given mke2fs program and options.
func mkfs(t testing.TB, prog, src, size string, opts ...string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	args := append([]string{"-q", "-F", "-d", src}, opts...)
	args = append(args, img, size)
	runTool(t, prog, args...)
	return img
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
	fsys, err := Open(f, st.Size())
	if err != nil {
		t.Fatalf("Open %s: %v", img, err)
	}
	return fsys
}
