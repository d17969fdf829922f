package ext4

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest"
	"golang.org/x/sys/unix"
)

// logRecorder collects what the reader logs.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logRecorder) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func openBytes(t testing.TB, img []byte, log *logRecorder) *FS {
	t.Helper()
	o := Options{}
	if log != nil {
		o.Logf = log.logf
	}
	fsys, err := OpenOptions(bytes.NewReader(img), int64(len(img)), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return fsys
}

// e2fsckN runs e2fsck -fn on a copy of img and returns its output; its
// exit status says only whether it found damage, so it is not checked.
func e2fsckN(t testing.TB, img []byte) string {
	t.Helper()
	needTool(t, "e2fsck")
	p := filepath.Join(t.TempDir(), "check.img")
	writeFile(t, p, img)
	out, _ := exec.Command("e2fsck", "-fn", p).CombinedOutput()
	return string(out)
}

// csumImage is a metadata_csum filesystem with one example of each
// checksummed structure, and where each lies.
type csumImage struct {
	path string
	img  []byte
	bs   int
	ino  map[string]uint64
	ioff map[string]int // byte offset of each inode
}

var debugfsInode = regexp.MustCompile(`Inode: (\d+)`)

func newCsumImage(t *testing.T, opts ...string) *csumImage {
	src := t.TempDir()
	r := rand.New(rand.NewPCG(9, 10))
	for i := range 40 {
		writeFile(t, filepath.Join(src, "f"+itoa(i)), []byte("file "+itoa(i)+"\n"))
	}
	// Eight data blocks apart: more extents than the inode holds, so
	// the tree gets a leaf block with a checksum tail.
	f, err := os.Create(filepath.Join(src, "frag"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		f.WriteAt(randBytes(r, 4096), int64(i)*65536)
	}
	f.Close()
	os.Mkdir(filepath.Join(src, "d"), 0o755)
	for i := range 20 {
		writeFile(t, filepath.Join(src, "d", "entry"+itoa(i)), []byte("x"))
	}
	os.Mkdir(filepath.Join(src, "big"), 0o755)
	for i := range 400 {
		writeFile(t, filepath.Join(src, "big", "a-long-name-for-an-htree-entry-"+itoa(i)), nil)
	}
	writeFile(t, filepath.Join(src, "xa"), []byte("attrs"))
	if err := unix.Setxattr(filepath.Join(src, "xa"), "user.big", bytes.Repeat([]byte("v"), 700), 0); err != nil {
		t.Fatal(err)
	}
	path := mkfs(t, "mkfs.ext4", src, "64M", append([]string{"-b", "4096", "-N", "512", "-g", "8192"}, opts...)...)
	// mke2fs -d writes linear directories; e2fsck -D indexes big/.
	if out, err := exec.Command("e2fsck", "-fyD", path).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			t.Fatalf("e2fsck -fyD: %v\n%s", err, out)
		}
	}
	c := &csumImage{path: path, bs: 4096, ino: map[string]uint64{}, ioff: map[string]int{}}
	for _, p := range []string{"f0", "f1", "frag", "d", "big", "xa"} {
		m := imapRE.FindStringSubmatch(runTool(t, "debugfs", "-R", "imap /"+p, path))
		if m == nil {
			t.Fatalf("debugfs imap /%s failed", p)
		}
		blk, _ := strconv.Atoi(m[1])
		off, _ := strconv.ParseInt(m[2], 16, 64)
		c.ioff[p] = blk*c.bs + int(off)
		n, _ := strconv.Atoi(debugfsInode.FindStringSubmatch(runTool(t, "debugfs", "-R", "stat /"+p, path))[1])
		c.ino[p] = uint64(n)
	}
	if c.img, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	return c
}

// firstBlock returns the first block debugfs lists for path (blocks).
func (c *csumImage) firstBlock(t *testing.T, path string) int {
	t.Helper()
	fields := strings.Fields(debugfsOut(t, c.path, "blocks /"+path))
	if len(fields) == 0 {
		t.Fatalf("debugfs blocks /%s: none", path)
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var xattrBlockRE = regexp.MustCompile(`File ACL: (\d+)`)
var extentNodeRE = regexp.MustCompile(`(?m)^\s*0/\s*1\s+1/\s*1\s+\d+ -\s*\d+\s+(\d+)`)

// TestMetadataChecksums damages one checksummed structure at a time, in
// bytes that nothing but the checksum covers, and checks that the reader
// refuses exactly what depends on it, as e2fsck -fn points at it, while
// the rest of the filesystem reads on.
func TestMetadataChecksums(t *testing.T) {
	c := newCsumImage(t)
	le := binary.LittleEndian
	if out := e2fsckN(t, c.img); !strings.Contains(out, "clean") && strings.Contains(out, "checksum") {
		t.Fatalf("undamaged image fails e2fsck:\n%s", out)
	}
	fsys := openBytes(t, c.img, nil)
	base := treeView(t, fsys)

	extentNode := func() int {
		m := extentNodeRE.FindStringSubmatch(runTool(t, "debugfs", "-R", "ex /frag", c.path))
		if m == nil {
			t.Fatal("frag has no extent tree block")
		}
		n, _ := strconv.Atoi(m[1])
		return n * c.bs
	}
	xattrBlock := func() int {
		m := xattrBlockRE.FindStringSubmatch(runTool(t, "debugfs", "-R", "stat /xa", c.path))
		n, _ := strconv.Atoi(m[1])
		if n == 0 {
			t.Fatal("xa has no xattr block")
		}
		return n * c.bs
	}
	cases := []struct {
		name   string
		damage func(b []byte)
		// what reads fail, with the inode their error must name; the
		// rest of the tree must read as before, less the paths gone.
		check func(t *testing.T, fsys *FS)
		gone  []string // paths no longer in the tree view
		fsck  string   // e2fsck -fn must say this
	}{
		{"inode", func(b []byte) { b[c.ioff["f1"]+0x10] ^= 1 }, // i_mtime
			func(t *testing.T, fsys *FS) {
				wantCorrupt(t, "Stat", c.ino["f1"], func() error { _, err := fsys.Stat(c.ino["f1"]); return err })
				wantCorrupt(t, "Lookup", c.ino["f1"], func() error { _, err := fsys.Lookup(fsys.Root(), "f1"); return err })
			}, []string{"/f1"}, "checksum does not match inode"},
		{"extent block", func(b []byte) { b[extentNode()+c.bs-100] ^= 1 }, // past the entries
			func(t *testing.T, fsys *FS) {
				wantCorrupt(t, "ReadAt", c.ino["frag"], func() error { _, err := fsys.ReadAt(c.ino["frag"], make([]byte, 10), 0); return err })
			}, []string{"/frag"}, "extent block passes checks, but checksum does not match extent"},
		{"directory leaf", func(b []byte) { b[c.firstBlock(t, "d")*c.bs+c.bs-20] ^= 1 }, // slack of the last entry
			func(t *testing.T, fsys *FS) {
				wantCorrupt(t, "ReadDir", c.ino["d"], func() error { _, err := fsys.ReadDir(c.ino["d"]); return err })
				wantCorrupt(t, "Lookup", c.ino["d"], func() error { _, err := fsys.Lookup(c.ino["d"], "entry3"); return err })
			}, []string{"/d"}, "fails checksum"},
		{"htree root", func(b []byte) {
			root := c.firstBlock(t, "big") * c.bs
			limit := int(le.Uint16(b[root+0x20:]))
			b[root+0x20+8*limit] ^= 1 // dt_reserved of the tail, under the checksum
		}, func(t *testing.T, fsys *FS) {
			wantCorrupt(t, "ReadDir", c.ino["big"], func() error { _, err := fsys.ReadDir(c.ino["big"]); return err })
		}, []string{"/big"}, "htree"},
		{"xattr block", func(b []byte) { b[xattrBlock()+c.bs/2] ^= 1 },
			func(t *testing.T, fsys *FS) {
				wantCorrupt(t, "ListXattr", c.ino["xa"], func() error { _, err := fsys.ListXattr(c.ino["xa"]); return err })
			}, []string{"/xa"}, "extended attribute block"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img := bytes.Clone(c.img)
			tc.damage(img)
			if out := e2fsckN(t, img); !strings.Contains(out, tc.fsck) {
				t.Fatalf("e2fsck -fn does not see the damage (%q):\n%s", tc.fsck, out)
			}
			log := &logRecorder{}
			fsys := openBytes(t, img, log)
			tc.check(t, fsys)
			got := treeViewLenient(t, fsys)
			want := dropPaths(base, tc.gone)
			if got != want {
				t.Errorf("damaged image reads differently:\n%s", diffLines(got, want))
			}
		})
	}
}

// debugfsOut runs one debugfs request on img and returns its standard
// output alone (debugfs prints its banner on standard error).
func debugfsOut(t testing.TB, img, req string) string {
	t.Helper()
	needTool(t, "debugfs")
	out, err := exec.Command("debugfs", "-R", req, img).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", req, err)
	}
	return string(out)
}

// diffLines shows the lines only one of two views has, shortened.
func diffLines(got, want string) string {
	short := func(s string) string {
		if len(s) > 120 {
			return s[:120] + "..."
		}
		return s
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var out []string
	for _, l := range g {
		if !slices.Contains(w, l) {
			out = append(out, "+ "+short(l))
		}
	}
	for _, l := range w {
		if !slices.Contains(g, l) {
			out = append(out, "- "+short(l))
		}
	}
	if len(out) > 40 {
		out = append(out[:40], "...")
	}
	return strings.Join(out, "\n")
}

func wantCorrupt(t *testing.T, what string, ino uint64, f func() error) {
	t.Helper()
	err := f()
	if !errors.Is(err, guest.ErrCorrupt) {
		t.Errorf("%s: %v, want a damaged filesystem error", what, err)
		return
	}
	if !strings.Contains(err.Error(), "inode "+itoa(int(ino))) {
		t.Errorf("%s: %v does not name inode %d", what, err, ino)
	}
}

// dropPaths removes from a tree view the lines of the paths and of
// everything below them.
func dropPaths(view string, paths []string) string {
	var keep []string
	for _, l := range strings.Split(view, "\n") {
		if !slices.ContainsFunc(paths, func(p string) bool {
			return strings.HasPrefix(l, p+" ") || strings.HasPrefix(l, p+"/")
		}) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestGroupDescriptorChecksum: a group whose descriptor fails its
// checksum (crc32c with metadata_csum, crc16 with uninit_bg) cannot say
// where its inodes are, so they read as damaged, and directory entries
// naming them are left out; the other groups read on.
func TestGroupDescriptorChecksum(t *testing.T) {
	for _, flavour := range []struct{ name, opts, fsck string }{
		{"crc32c", "metadata_csum", "descriptor"},
		{"crc16", "^metadata_csum,uninit_bg", "descriptor"},
	} {
		t.Run(flavour.name, func(t *testing.T) {
			c := newCsumImage(t, "-O", flavour.opts)
			fsys := openBytes(t, c.img, nil)
			base := treeView(t, fsys)
			per := uint64(fsys.sb.inodesPerGroup)
			var gone []string
			var victim uint64
			for p, ino := range pathInodes(t, fsys) {
				if (ino-1)/per == 1 {
					gone = append(gone, p)
					victim = ino
				}
			}
			if victim == 0 {
				t.Fatal("no inode of group 1 in use")
			}
			img := bytes.Clone(c.img)
			at := int(fsys.sb.descBlock(1))*c.bs + int(fsys.sb.descSize) // group 1's descriptor
			img[at+0x1C] ^= 1                                            // bg_itable_unused_lo, under the checksum
			if out := e2fsckN(t, img); !strings.Contains(out, flavour.fsck) {
				t.Fatalf("e2fsck -fn does not see the damage:\n%s", out)
			}
			log := &logRecorder{}
			fsys = openBytes(t, img, log)
			if _, err := fsys.Stat(victim); !errors.Is(err, guest.ErrCorrupt) || !strings.Contains(err.Error(), "group 1") {
				t.Errorf("Stat of inode %d in group 1: %v", victim, err)
			}
			if got, want := treeViewLenient(t, fsys), dropPaths(base, gone); got != want {
				t.Errorf("damaged image reads differently:\n%s", diffLines(got, want))
			}
			if !log.has("left out") {
				t.Error("nothing logged for the entries left out")
			}
		})
	}
}

// pathInodes maps every path of fsys to its inode number.
func pathInodes(t *testing.T, fsys *FS) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	var walk func(ino uint64, path string)
	walk = func(ino uint64, path string) {
		ents, err := fsys.ReadDir(ino)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			out[path+"/"+e.Name] = e.Ino
			if e.Mode == unix.S_IFDIR {
				walk(e.Ino, path+"/"+e.Name)
			}
		}
	}
	walk(fsys.Root(), "")
	return out
}
