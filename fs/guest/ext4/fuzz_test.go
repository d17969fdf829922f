package ext4

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
const maxFuzzImage = 1 << 20

func unpackImage(b []byte) []byte {
	var img []byte
	fuzzimg.Decode(b, maxFuzzImage,
		func(n int64, fill byte) { img = append(img, bytes.Repeat([]byte{fill}, int(n))...) },
		func(p []byte) { img = append(img, p...) })
	return img
}

// seedImages builds tiny images of a small tree with mke2fs.
func seedImages(t testing.TB) map[string][]byte {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "small"), []byte("hello, ext4\n"))
	writeFile(t, filepath.Join(src, "block"), bytes.Repeat([]byte("0123456789abcdef"), 70))
	if err := os.Mkdir(filepath.Join(src, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "dir", "inner"), []byte("inner"))
	if err := os.Symlink("dir/inner", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	long := bytes.Repeat([]byte("long/"), 16)
	if err := os.Symlink(string(long), filepath.Join(src, "slowlink")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(src, "small"), "user.k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	for name, args := range map[string][]string{
		"ext2":   {"mkfs.ext2", "64K", "-b", "1024", "-N", "32"},
		"ext4":   {"mkfs.ext4", "128K", "-b", "1024", "-N", "32", "-O", "^has_journal"},
		"inline": {"mkfs.ext4", "128K", "-b", "1024", "-N", "32", "-O", "^has_journal,inline_data"},
		"noext":  {"mkfs.ext4", "128K", "-b", "1024", "-N", "32", "-O", "^has_journal,^extent,^64bit", "-I", "128"},
	} {
		img, err := os.ReadFile(mkfs(t, args[0], src, args[1], args[2:]...))
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = fuzzimg.Pack(img)
	}
	return seeds
}

var updateSeeds = flag.Bool("ext4.update-seeds", false, "rewrite testdata/fuzz/FuzzOpen seeds")

func TestFuzzSeeds(t *testing.T) {
	for name, packed := range seedImages(t) {
		img := unpackImage(packed)
		fsys, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := walk(fsys, 100, 1<<20); err != nil {
			t.Fatalf("%s: walk: %v", name, err)
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
		if os.Getenv("EXT4_FUZZ_WATCHDOG") != "" {
			tm := time.AfterFunc(3*time.Second, func() { panic("slow input") })
			defer tm.Stop()
		}
		fsys, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			if !errors.Is(err, guest.ErrCorrupt) && !errors.Is(err, guest.ErrUnknown) {
				t.Fatalf("Open error wraps neither ErrCorrupt nor ErrUnknown: %v", err)
			}
			return
		}
		_ = walk(fsys, 64, 64<<10)
	})
}
