package ntfs

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/fuzzimg"
	"golang.org/x/sys/unix"
)

// Fuzz inputs are images in fuzzimg's run-length form, at most
// maxFuzzImage bytes once unpacked.
const maxFuzzImage = 2 << 20

func unpackImage(b []byte) []byte {
	var img []byte
	fuzzimg.Decode(b, maxFuzzImage,
		func(n int64, fill byte) { img = append(img, bytes.Repeat([]byte{fill}, int(n))...) },
		func(p []byte) { img = append(img, p...) })
	return img
}

// shrink zeroes what this reader never reads, so that seeds stay small:
// every cluster but the boot sector, the MFT records of the root and of
// the files under it (not the other metadata files, the files under
// $Extend, the free and reserved records) and the clusters their
// streams and indexes use.
func shrink(t testing.TB, img []byte) {
	t.Helper()
	fsys, err := Open(bytes.NewReader(img), int64(len(img)), Options{})
	must(t, err)
	cs, rs := fsys.bt.clusterSize, fsys.bt.recordSize
	keep := make([]bool, uint64(len(img))/cs)
	keep[0] = true
	keepStream := func(s *stream) {
		if s == nil || s.resident || s.err != nil {
			return
		}
		for _, r := range s.runs {
			for c := r.lcn; r.lcn != holeLCN && c < r.lcn+r.n; c++ {
				keep[c] = true
			}
		}
	}
	var drop []uint64
	for n := uint64(1); (n+1)*rs <= fsys.mft.initSize; n++ {
		in, err := fsys.inode(n)
		user := err == nil && len(in.names) > 0 && mrefNum(in.names[0].parent) != 11 && n >= firstUser
		if !user && n != RootIno {
			drop = append(drop, n)
			continue
		}
		for _, s := range append([]*stream{in.data, in.indexAlloc, in.indexBmp, in.reparse}, in.named...) {
			keepStream(s)
		}
	}
	keepStream(fsys.mft)
	for c, k := range keep {
		if !k {
			clear(img[uint64(c)*cs : uint64(c+1)*cs])
		}
	}
	for _, n := range drop {
		i := findRun(fsys.mft.runs, n*rs/cs)
		off := fsys.mft.runs[i].lcn*cs + n*rs - fsys.mft.runs[i].vcn*cs
		clear(img[off : off+rs])
	}
}

// seedImages builds tiny images of a small tree through ntfs-3g.
func seedImages(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	for name, cs := range map[string]int{"c512": 512, "c4096": 4096} {
		img := mkntfs(t, maxFuzzImage, cs)
		mnt, unmount := mountImage(t, img)
		p := func(s string) string { return filepath.Join(mnt, s) }
		writeFile(t, p("small"), []byte("hello, ntfs\n"))
		must(t, unix.Setxattr(p("small"), "user.s", []byte("stream"), 0))
		must(t, os.Mkdir(p("dir"), 0o755))
		writeFile(t, p("dir/inner"), bytes.Repeat([]byte("x"), 6000))
		must(t, os.Symlink("dir/inner", p("link")))
		if cs <= maxCompressedClus {
			must(t, os.Mkdir(p("comp"), 0o755))
			setAttrib(t, p("comp"), faCompressed|0x10)
			writeFile(t, p("comp/text"), bytes.Repeat([]byte("compress me, "), 2*65536/13+1))
		}
		f, err := os.Create(p("sparse"))
		must(t, err)
		_, err = f.WriteAt([]byte("tail"), 100000)
		must(t, err)
		must(t, f.Close())
		unmount()
		b, err := os.ReadFile(img)
		must(t, err)
		shrink(t, b)
		seeds[name] = fuzzimg.Pack(b)
	}
	return seeds
}

var updateSeeds = flag.Bool("ntfs.update-seeds", false, "rewrite testdata/fuzz/FuzzOpen seeds")

// TestFuzzSeeds checks that the seed images open and walk cleanly, so
// the fuzzer starts from volumes that reach deep into the reader.
func TestFuzzSeeds(t *testing.T) {
	for name, packed := range seedImages(t) {
		img := unpackImage(packed)
		fsys, err := Open(bytes.NewReader(img), int64(len(img)), Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := walk(fsys, 100, 1<<20); err != nil {
			t.Fatalf("%s: walk: %v", name, err)
		}
		if ents, _ := fsys.ReadDir(fsys.Root()); len(ents) < 4 {
			t.Fatalf("%s: root lists %d entries", name, len(ents))
		}
		if *updateSeeds {
			dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
			must(t, os.MkdirAll(dir, 0o755))
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", packed)
			must(t, os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644))
		}
	}
}

func FuzzOpen(f *testing.F) {
	f.Fuzz(func(t *testing.T, packed []byte) {
		img := unpackImage(packed)
		if os.Getenv("NTFS_FUZZ_WATCHDOG") != "" {
			tm := time.AfterFunc(3*time.Second, func() { panic("slow input") })
			defer tm.Stop()
		}
		fsys, err := Open(bytes.NewReader(img), int64(len(img)), Options{})
		if err != nil {
			if !errors.Is(err, guest.ErrCorrupt) && !errors.Is(err, guest.ErrUnknown) {
				t.Fatalf("Open error wraps neither ErrCorrupt nor ErrUnknown: %v", err)
			}
			return
		}
		_ = walk(fsys, 64, 64<<10)
	})
}
