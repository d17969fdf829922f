package xfs

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/fuzzimg"
)

// Fuzz inputs are images in fuzzimg's run-length form, read in place
// (an XFS volume is at least 16 MiB, mostly zeros), at most maxFuzzImage
// bytes.
const maxFuzzImage = 64 << 20

type segment struct {
	off, n int64
	fill   byte
	lit    []byte
}

// rleImage serves ReadAt from the runs of a packed image.
type rleImage struct {
	segs []segment
	size int64
}

func unpackImage(b []byte) *rleImage {
	d := &rleImage{}
	add := func(s segment) {
		if s.n > 0 {
			s.off = d.size
			d.segs = append(d.segs, s)
			d.size += s.n
		}
	}
	fuzzimg.Decode(b, maxFuzzImage,
		func(n int64, fill byte) { add(segment{n: n, fill: fill}) },
		func(p []byte) { add(segment{n: int64(len(p)), lit: p}) })
	return d
}

func (d *rleImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= d.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), d.size-off))
	i := sort.Search(len(d.segs), func(i int) bool { return d.segs[i].off+d.segs[i].n > off })
	for done := 0; done < n; i++ {
		s := d.segs[i]
		at := off + int64(done) - s.off
		k := int(min(int64(n-done), s.n-at))
		if s.lit != nil {
			copy(p[done:done+k], s.lit[at:])
		} else {
			for j := range k {
				p[done+j] = s.fill
			}
		}
		done += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// seedImages builds tiny images of a small tree with mkfs.xfs.
func seedImages(t testing.TB) map[string][]byte {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "small"), []byte("hello, xfs\n"))
	writeFile(t, filepath.Join(src, "blocks"), append(bytes.Repeat([]byte("x"), 3000), "end"...))
	if err := os.Mkdir(filepath.Join(src, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Long names, so that few entries overflow the inode into a block.
	for i := range 12 {
		writeFile(t, filepath.Join(src, "dir", fmt.Sprintf("inner-%02d-with-a-long-long-name", i)), nil)
	}
	if err := os.Symlink("dir/inner-01-with-a-long-long-name", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strings.Repeat("long/", 80), filepath.Join(src, "slowlink")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, xattrSpecPath(src), []byte("small\tuser.k=1,trusted.t=3\nblocks\tuser.a=1,user.big=900,user.huge=2000\n"))
	seeds := map[string][]byte{}
	for name, opts := range map[string][]string{
		"v5": {"-b", "size=1024", "-i", "size=512"},
		"v4": {"-m", "crc=0", "-b", "size=1024", "-n", "ftype=0"},
	} {
		im := mkfs(t, src, "16m", opts...)
		img, err := os.ReadFile(im.path)
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = fuzzimg.Pack(touchedOnly(t, img))
	}
	return seeds
}

// touchedOnly zeroes every byte of img that opening and walking it does
// not read (free space, allocation btrees, unused inodes), so seeds hold
// only what the reader parses and stay a few KB.
func touchedOnly(t testing.TB, img []byte) []byte {
	rec := &recorder{r: bytes.NewReader(img), used: make([]bool, len(img))}
	fsys, err := Open(rec, int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if err := walk(fsys, 1000, 1<<20); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(img))
	for i, u := range rec.used {
		if u {
			out[i] = img[i]
		}
	}
	return out
}

type recorder struct {
	r    io.ReaderAt
	used []bool
}

func (r *recorder) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.r.ReadAt(p, off)
	for i := range n {
		r.used[off+int64(i)] = true
	}
	return n, err
}

var updateSeeds = flag.Bool("xfs.update-seeds", false, "rewrite testdata/fuzz/FuzzOpen seeds")

func TestFuzzSeeds(t *testing.T) {
	for name, packed := range seedImages(t) {
		img := unpackImage(packed)
		fsys, err := Open(img, img.size)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := fsys.LogErr(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := walk(fsys, 100, 1<<20); err != nil {
			t.Fatalf("%s: walk: %v", name, err)
		}
		t.Logf("%s: %d bytes packed", name, len(packed))
		if os.Getenv("XFS_SEED_DUMP") != "" {
			var raw []byte
			fuzzimg.Decode(packed, maxFuzzImage, func(n int64, fill byte) { raw = append(raw, bytes.Repeat([]byte{fill}, int(n))...) }, func(p []byte) { raw = append(raw, p...) })
			os.WriteFile(os.Getenv("XFS_SEED_DUMP")+name, raw, 0o644)
		}
		if *updateSeeds {
			dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", packed)
			if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func FuzzOpen(f *testing.F) {
	f.Fuzz(func(t *testing.T, packed []byte) {
		img := unpackImage(packed)
		if os.Getenv("XFS_FUZZ_WATCHDOG") != "" {
			tm := time.AfterFunc(3*time.Second, func() { panic("slow input") })
			defer tm.Stop()
		}
		fsys, err := Open(img, img.size)
		if err != nil {
			if !errors.Is(err, guest.ErrCorrupt) && !errors.Is(err, guest.ErrUnknown) {
				t.Fatalf("Open error wraps neither ErrCorrupt nor ErrUnknown: %v", err)
			}
			return
		}
		_ = fsys.LogErr()
		if err := walk(fsys, 64, 64<<10); err != nil && !errors.Is(err, guest.ErrCorrupt) {
			t.Fatalf("walk error does not wrap ErrCorrupt: %v", err)
		}
	})
}
