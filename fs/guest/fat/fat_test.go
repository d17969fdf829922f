package fat

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
)

// srcFile is one file of the source tree a test volume is built from.
type srcFile struct {
	path string // slash-separated, relative
	data []byte
}

var baseTime = time.Date(2021, 3, 4, 5, 6, 8, 0, time.UTC)

// makeTree writes the source tree: empty, small, multi-cluster and 3 MB
// files, long names with spaces and unicode, 8.3 names of every case, a
// deep path and a directory spanning several clusters.
func makeTree(t testing.TB, big bool) (string, []srcFile) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	blob := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	files := []srcFile{
		{"empty.txt", nil},
		{"small.txt", []byte("hello, cairn\n")},
		{"clusters.bin", blob(70000)},
		{"A long file name with spaces.txt", []byte("spaces")},
		{"ünïcødé ファイル.txt", []byte("unicode")},
		{"lower.txt", []byte("lower")},
		{"UPPER.TXT", []byte("upper")},
		{"MiXeD.TxT", []byte("mixed")},
		{"noext", []byte("no extension")},
		{"case/Readme.md", []byte("readme")},
		{"a/b/c/d/e/f/g/h/deep file.txt", []byte("deep")},
		{"a/b/sibling.dat", blob(1500)},
		{"readonly.txt", []byte("do not write")},
	}
	if big {
		files = append(files, srcFile{"big/random.bin", blob(3 << 20)})
	}
	for i := range 150 {
		files = append(files, srcFile{fmt.Sprintf("many/file number %03d.txt", i), []byte(fmt.Sprint(i))})
	}
	root := t.TempDir()
	for i, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
		// Odd seconds too: FAT keeps two-second steps.
		mt := baseTime.Add(time.Duration(i) * 61 * time.Second)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	return root, files
}

// makeImage formats a volume with mkfs.vfat and copies the tree in with
// mcopy, keeping modification times.
func makeImage(t testing.TB, fatBits string, sizeKB int, big bool) (string, []srcFile) {
	t.Helper()
	needTool(t, "mkfs.vfat", "mcopy", "mattrib")
	src, files := makeTree(t, big)
	img := filepath.Join(t.TempDir(), "fat.img")
	args := []string{"-F", fatBits, "-n", "CAIRNTEST"}
	if fatBits == "32" {
		args = append(args, "-S", "512", "-s", "1")
	}
	tool(t, "mkfs.vfat", append(args, "-C", img, fmt.Sprint(sizeKB))...)
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	cp := []string{"-s", "-m", "-i", img}
	for _, e := range ents {
		cp = append(cp, filepath.Join(src, e.Name()))
	}
	tool(t, "mcopy", append(cp, "::/")...)
	tool(t, "mattrib", "-i", img, "+r", "::/readonly.txt")
	return img, files
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
	fs, err := Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func walk(t testing.TB, fs *FS, path string) uint64 {
	t.Helper()
	ino := fs.Root()
	for _, name := range strings.Split(path, "/") {
		next, err := fs.Lookup(ino, name)
		if err != nil {
			t.Fatalf("lookup %q in %s: %v", name, path, err)
		}
		ino = next
	}
	return ino
}

func TestVolumes(t *testing.T) {
	for _, tc := range []struct {
		bits   string
		sizeKB int
		want   Type
	}{
		{"12", 8192, FAT12},
		{"16", 32768, FAT16},
		{"32", 40000, FAT32},
	} {
		t.Run("FAT"+tc.bits, func(t *testing.T) {
			t.Parallel()
			img, files := makeImage(t, tc.bits, tc.sizeKB, !testing.Short())
			fs := openImage(t, img)
			if fs.Type() != tc.want {
				t.Fatalf("type %v, want %v", fs.Type(), tc.want)
			}
			checkTree(t, fs, files)
		})
	}
}

// checkTree compares every file and directory listing of the volume
// against the source tree.
func checkTree(t *testing.T, fs *FS, files []srcFile) {
	rng := rand.New(rand.NewPCG(3, 4))
	dirs := map[string][]string{} // dir path -> names
	inos := map[uint64]string{}
	for i, f := range files {
		ino := walk(t, fs, f.path)
		if other, dup := inos[ino]; dup {
			t.Fatalf("inode %d for both %s and %s", ino, other, f.path)
		}
		inos[ino] = f.path
		a, err := fs.Stat(ino)
		if err != nil {
			t.Fatal(err)
		}
		wantMode := uint32(syscall.S_IFREG | 0o644)
		if f.path == "readonly.txt" {
			wantMode = syscall.S_IFREG | 0o444
		}
		if a.Mode != wantMode || a.Size != uint64(len(f.data)) || a.Ino != ino || a.Nlink != 1 {
			t.Errorf("%s: attr %+v, want mode %o size %d", f.path, a, wantMode, len(f.data))
		}
		wantMt := baseTime.Add(time.Duration(i) * 61 * time.Second).Truncate(2 * time.Second)
		if !a.Mtime.Equal(wantMt) {
			t.Errorf("%s: mtime %v, want %v", f.path, a.Mtime, wantMt)
		}
		if a.Blocks*512 < a.Size || a.Blocks*512 >= a.Size+uint64(fs.l.clusterSize) {
			t.Errorf("%s: %d blocks for %d bytes", f.path, a.Blocks, a.Size)
		}
		// Whole file, in odd-sized pieces, then random offsets.
		var got bytes.Buffer
		buf := make([]byte, 1+rng.IntN(9000))
		for off := int64(0); ; {
			n, err := fs.ReadAt(ino, buf, off)
			got.Write(buf[:n])
			off += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: read at %d: %v", f.path, off, err)
			}
		}
		if !bytes.Equal(got.Bytes(), f.data) {
			t.Fatalf("%s: content differs (%d bytes read, %d want)", f.path, got.Len(), len(f.data))
		}
		for range 20 {
			if len(f.data) == 0 {
				break
			}
			off := rng.Int64N(int64(len(f.data)))
			p := make([]byte, rng.IntN(100000)+1)
			n, err := fs.ReadAt(ino, p, off)
			want := f.data[off:min(int64(len(f.data)), off+int64(len(p)))]
			if !bytes.Equal(p[:n], want) || (n < len(p)) != (err == io.EOF) || (err != nil && err != io.EOF) {
				t.Fatalf("%s: read %d at %d: n=%d err=%v", f.path, len(p), off, n, err)
			}
		}
		if n, err := fs.ReadAt(ino, make([]byte, 1), int64(len(f.data))); n != 0 || err != io.EOF {
			t.Fatalf("%s: read at end: %d, %v", f.path, n, err)
		}
		// Record names per directory, parents included.
		parts := strings.Split(f.path, "/")
		for k := range parts {
			d := strings.Join(parts[:k], "/")
			if !slices.Contains(dirs[d], parts[k]) {
				dirs[d] = append(dirs[d], parts[k])
			}
		}
	}
	for d, names := range dirs {
		ino := fs.Root()
		if d != "" {
			ino = walk(t, fs, d)
			a, err := fs.Stat(ino)
			if err != nil || a.Mode != syscall.S_IFDIR|0o755 || a.Nlink != 2 || a.Size == 0 {
				t.Errorf("dir %s: %+v, %v", d, a, err)
			}
		}
		ents, err := fs.ReadDir(ino)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name)
		}
		sort.Strings(names)
		if !slices.Equal(got, names) {
			t.Errorf("dir %q: names\n got %q\nwant %q", d, got, names)
		}
		if !sort.StringsAreSorted(got) {
			t.Errorf("dir %q not sorted", d)
		}
	}
}

func TestLookupIgnoresCase(t *testing.T) {
	img, _ := makeImage(t, "12", 4096, false)
	fs := openImage(t, img)
	for _, pair := range [][2]string{
		{"case/Readme.md", "CASE/README.MD"},
		{"lower.txt", "LOWER.TXT"},
		{"MiXeD.TxT", "mixed.txt"},
		{"ünïcødé ファイル.txt", "ÜNÏCØDÉ ファイル.TXT"},
		{"A long file name with spaces.txt", "ALONGF~1.TXT"},
	} {
		if a, b := walk(t, fs, pair[0]), walk(t, fs, pair[1]); a != b {
			t.Errorf("%s and %s: inodes %d and %d", pair[0], pair[1], a, b)
		}
	}
	if _, err := fs.Lookup(fs.Root(), "missing"); !errors.Is(err, guest.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	small := walk(t, fs, "small.txt")
	if _, err := fs.ReadDir(small); !errors.Is(err, guest.ErrNotDir) {
		t.Errorf("ReadDir of a file: %v", err)
	}
	if _, err := fs.ReadAt(walk(t, fs, "case"), make([]byte, 1), 0); !errors.Is(err, guest.ErrIsDir) {
		t.Errorf("ReadAt of a dir: %v", err)
	}
	if _, err := fs.Readlink(small); !errors.Is(err, guest.ErrNotSymlink) {
		t.Errorf("Readlink: %v", err)
	}
	if x, err := fs.ListXattr(small); err != nil || len(x) != 0 {
		t.Errorf("ListXattr: %v, %v", x, err)
	}
	if _, err := fs.GetXattr(small, "user.x"); !errors.Is(err, guest.ErrNoXattr) {
		t.Errorf("GetXattr: %v", err)
	}
	for _, bad := range []uint64{0, 2, 33, 1 << 40} {
		if _, err := fs.Stat(bad); !errors.Is(err, guest.ErrNotFound) {
			t.Errorf("Stat(%d): %v", bad, err)
		}
	}
}
