package ext4

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// treeView lists every path of fsys with its type, mode, size, xattrs
// and content (or link target), for comparing two readings of a
// filesystem. Any error fails the test.
func treeView(t *testing.T, fsys *FS) string {
	t.Helper()
	return view(t, fsys, false)
}

// treeViewLenient is treeView on a damaged filesystem: a path whose
// reading fails is left out, with everything below it.
func treeViewLenient(t *testing.T, fsys *FS) string {
	t.Helper()
	return view(t, fsys, true)
}

func view(t *testing.T, fsys *FS, lenient bool) string {
	t.Helper()
	var lines []string
	fail := func(format string, args ...any) {
		t.Helper()
		if !lenient {
			t.Fatalf(format, args...)
		}
	}
	var walk func(ino uint64, path string) bool
	walk = func(ino uint64, path string) bool {
		ents, err := fsys.ReadDir(ino)
		if err != nil {
			fail("readdir %s: %v", path, err)
			return false
		}
		for _, e := range ents {
			if e.Name == "lost+found" && path == "" {
				continue
			}
			p := path + "/" + e.Name
			a, err := fsys.Stat(e.Ino)
			if err != nil {
				fail("stat %s: %v", p, err)
				continue
			}
			line := fmt.Sprintf("%s %o %d", p, a.Mode, a.Size)
			names, err := fsys.ListXattr(e.Ino)
			if err != nil {
				fail("listxattr %s: %v", p, err)
				continue
			}
			sort.Strings(names)
			for _, n := range names {
				v, err := fsys.GetXattr(e.Ino, n)
				if err != nil {
					fail("getxattr %s %s: %v", p, n, err)
				}
				line += fmt.Sprintf(" %s=%x", n, v)
			}
			switch a.Mode & syscall.S_IFMT {
			case syscall.S_IFDIR:
				mark := len(lines)
				if !walk(e.Ino, p) {
					lines = lines[:mark]
					continue
				}
			case syscall.S_IFREG:
				b := make([]byte, a.Size)
				if n, err := fsys.ReadAt(e.Ino, b, 0); n != len(b) && err != io.EOF {
					fail("read %s: %v", p, err)
					continue
				}
				line += fmt.Sprintf(" %x", b)
			case syscall.S_IFLNK:
				l, err := fsys.Readlink(e.Ino)
				if err != nil {
					fail("readlink %s: %v", p, err)
					continue
				}
				line += " -> " + l
			}
			lines = append(lines, line)
		}
		return true
	}
	walk(fsys.Root(), "")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// changedBlocks returns the 4 KiB blocks where a and b differ, and b's
// content of them, concatenated.
func changedBlocks(t *testing.T, a, b string) ([]int, []byte) {
	t.Helper()
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	var blocks []int
	var data []byte
	for i := 0; i*4096 < len(db); i++ {
		x, y := da[i*4096:(i+1)*4096], db[i*4096:(i+1)*4096]
		if !bytes.Equal(x, y) {
			blocks = append(blocks, i)
			data = append(data, y...)
		}
	}
	return blocks, data
}

// debugfsScript runs debugfs -w with commands on img.
func debugfsScript(t testing.TB, img string, cmds ...string) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "cmds")
	writeFile(t, script, []byte(strings.Join(cmds, "\n")+"\n"))
	out := runTool(t, "debugfs", "-w", "-f", script, img)
	if strings.Contains(out, "rror") || strings.Contains(out, "invalid") {
		t.Fatalf("debugfs: %s", out)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, b)
}

// A point of a disk whose filesystem was mounted holds committed journal
// transactions not yet written in place. The reader must show the
// filesystem as the kernel would after replaying them: here, the
// journal carries every block a set of changes touched, so the
// journaled image must read exactly like the changed one.
func TestJournalReplay(t *testing.T) {
	needTool(t, "debugfs")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "keep.txt"), []byte("unchanged\n"))
	writeFile(t, filepath.Join(src, "gone.txt"), []byte("to be removed\n"))
	os.Mkdir(filepath.Join(src, "dir"), 0o755)
	writeFile(t, filepath.Join(src, "dir", "inner"), bytes.Repeat([]byte("x"), 9000))
	base := mkfs(t, "mkfs.ext4", src, "32M", "-b", "4096")
	dir := t.TempDir()
	newFile := filepath.Join(dir, "new.txt")
	writeFile(t, newFile, bytes.Repeat([]byte("fresh data "), 700))

	// The changed filesystem, written directly (debugfs uses no journal).
	changed := filepath.Join(dir, "changed.img")
	copyFile(t, base, changed)
	debugfsScript(t, changed, "rm /gone.txt", "write "+newFile+" /new.txt", "mkdir /newdir", "symlink /newdir/link /keep.txt")
	want := treeView(t, openImage(t, changed))
	if before := treeView(t, openImage(t, base)); before == want {
		t.Fatal("the changes changed nothing")
	}
	blocks, data := changedBlocks(t, base, changed)
	list := make([]string, len(blocks))
	for i, b := range blocks {
		list[i] = strconv.Itoa(b)
	}
	blockData := filepath.Join(dir, "blocks")
	writeFile(t, blockData, data)

	for _, variant := range []struct{ name, open string }{
		{"plain", "jo"},
		{"checksums", "jo -c"},
	} {
		t.Run(variant.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "journaled.img")
			copyFile(t, base, img)
			// One transaction carrying every changed block.
			debugfsScript(t, img, variant.open, "jw -b "+strings.Join(list, ",")+" "+blockData, "jc")
			if out := runTool(t, "dumpe2fs", "-h", img); !strings.Contains(out, "needs_recovery") {
				t.Fatalf("the journal has nothing to recover:\n%s", out)
			}
			if got := treeView(t, openImage(t, img)); got != want {
				t.Errorf("journaled image reads differently:\n%s", diffLines(got, want))
			}
		})
	}

	// A block logged and then revoked by a later transaction is not
	// replayed: the first copy must not come back.
	t.Run("revoke", func(t *testing.T) {
		img := filepath.Join(t.TempDir(), "revoked.img")
		copyFile(t, base, img)
		in := lookupPath(t, openImage(t, base), "keep.txt")
		ext, err := openImage(t, base).MapFile(nil, in, 0, 10)
		if err != nil || len(ext) != 1 {
			t.Fatalf("map keep.txt: %v %v", ext, err)
		}
		blk := strconv.FormatInt(ext[0].Off/4096, 10)
		junk := filepath.Join(t.TempDir(), "junk")
		writeFile(t, junk, bytes.Repeat([]byte("J"), 4096))
		debugfsScript(t, img, "jo", "jw -b "+blk+" "+junk, "jw -r "+blk, "jc")
		fsys := openImage(t, img)
		b := make([]byte, 10)
		fsys.ReadAt(lookupPath(t, fsys, "keep.txt"), b, 0)
		if string(b) != "unchanged\n" {
			t.Errorf("keep.txt reads %q after its journaled copy was revoked", b)
		}
	})
}

// FuzzJournal replays arbitrary journal contents over a real journaled
// image: the input replaces the first blocks of the journal.
func FuzzJournal(f *testing.F) {
	src := f.TempDir()
	writeFile(f, filepath.Join(src, "small"), []byte("hello, ext4\n"))
	img := mkfs(f, "mkfs.ext4", src, "4M", "-b", "1024", "-N", "32")
	fsys := openImage(f, img)
	small, err := fsys.Lookup(fsys.Root(), "small")
	if err != nil {
		f.Fatal(err)
	}
	ext, err := fsys.MapFile(nil, small, 0, 1)
	if err != nil || len(ext) != 1 {
		f.Fatalf("map small: %v %v", ext, err)
	}
	blk := filepath.Join(f.TempDir(), "blk")
	writeFile(f, blk, append([]byte("replayed\n"), make([]byte, 1024-9)...))
	debugfsScript(f, img, "jo -c", fmt.Sprintf("jw -b %d %s", ext[0].Off/1024, blk), "jw -r 5", "jc")
	base, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	jext, err := openImage(f, img).MapFile(nil, uint64(fsys.sb.journalIno), 0, 8<<10)
	if err != nil || len(jext) == 0 {
		f.Fatalf("map journal: %v %v", jext, err)
	}
	at := jext[0].Off
	f.Add(base[at : at+8<<10])
	f.Fuzz(func(t *testing.T, journal []byte) {
		im := bytes.Clone(base)
		copy(im[at:at+8<<10], journal)
		fsys, err := Open(bytes.NewReader(im), int64(len(im)))
		if err != nil {
			return
		}
		_ = walk(fsys, 64, 64<<10)
	})
}

// A journal that needs recovery but cannot be followed (here: a feature
// this reader does not know) leaves the filesystem as checkpointed, and
// JournalErr says why.
func TestJournalNotFollowed(t *testing.T) {
	needTool(t, "debugfs")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "keep.txt"), []byte("unchanged\n"))
	img := mkfs(t, "mkfs.ext4", src, "8M", "-b", "4096")
	want := treeView(t, openImage(t, img))
	fsys := openImage(t, img)
	ext, err := fsys.MapFile(nil, lookupPath(t, fsys, "keep.txt"), 0, 10)
	if err != nil || len(ext) != 1 {
		t.Fatalf("map keep.txt: %v %v", ext, err)
	}
	junk := filepath.Join(t.TempDir(), "junk")
	writeFile(t, junk, bytes.Repeat([]byte("J"), 4096))
	debugfsScript(t, img, "jo", "jw -b "+strconv.FormatInt(ext[0].Off/4096, 10)+" "+junk, "jc")
	if fsys := openImage(t, img); fsys.JournalErr() != nil || treeView(t, fsys) == want {
		t.Fatalf("the logged block was not replayed (journal error %v)", fsys.JournalErr())
	}
	// Set an unknown incompatible feature in the journal superblock.
	jext, err := fsys.MapFile(nil, uint64(fsys.sb.journalIno), 0, 4096)
	if err != nil || len(jext) != 1 {
		t.Fatalf("map journal: %v %v", jext, err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0x80, 0, 0, 0}, jext[0].Off+0x28)
	f.Close()
	fsys = openImage(t, img)
	if err := fsys.JournalErr(); err == nil || !strings.Contains(err.Error(), "unknown features") {
		t.Errorf("JournalErr = %v, want unknown features", err)
	}
	if got := treeView(t, fsys); got != want {
		t.Errorf("unreplayed image reads differently:\n%s", diffLines(got, want))
	}
}
