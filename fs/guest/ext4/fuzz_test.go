package ext4

import (
	"bytes"
	"encoding/binary"
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
// maxFuzzImage bytes once unpacked: room for a 1 KiB-block filesystem
// with the smallest journal (1024 blocks) and its fast-commit area.
const maxFuzzImage = 2 << 20

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
		"ext2":     {"mkfs.ext2", "64K", "-b", "1024", "-N", "32"},
		"ext4":     {"mkfs.ext4", "128K", "-b", "1024", "-N", "32", "-O", "^has_journal"},
		"inline":   {"mkfs.ext4", "128K", "-b", "1024", "-N", "32", "-O", "^has_journal,inline_data"},
		"noext":    {"mkfs.ext4", "128K", "-b", "1024", "-N", "32", "-O", "^has_journal,^extent,^64bit", "-I", "128"},
		"bigalloc": {"mkfs.ext4", "256K", "-b", "1024", "-N", "32", "-C", "4096", "-O", "^has_journal,bigalloc"},
	} {
		img, err := os.ReadFile(mkfs(t, args[0], src, args[1], args[2:]...))
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = fuzzimg.Pack(img)
	}
	seeds["journal"] = fuzzimg.Pack(journalSeed(t, src))
	return seeds
}

// journalSeed is a 2 MiB filesystem that needs recovery: a committed
// transaction rewriting the block of "small" and revoking another, and
// after it a fast commit linking "small" again as "again" and logging
// its inode.
func journalSeed(t testing.TB, src string) []byte {
	img := mkfs(t, "mkfs.ext4", src, "2M", "-b", "1024", "-N", "32", "-O", "fast_commit")
	fsys := openImage(t, img)
	small := lookupPath(t, fsys, "small")
	ext, err := fsys.MapFile(nil, small, 0, 1)
	if err != nil || len(ext) != 1 {
		t.Fatalf("map small: %v %v", ext, err)
	}
	jino := uint64(fsys.sb.journalIno)
	jat := func(i int) int {
		e, err := fsys.MapFile(nil, jino, int64(i)*1024, 1024)
		if err != nil || len(e) != 1 {
			t.Fatalf("journal block %d: %v %v", i, e, err)
		}
		return int(e[0].Off)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// The journal as a mounted kernel keeps it: fast commits on.
	be := binary.BigEndian
	jsb := b[jat(0):]
	be.PutUint32(jsb[0x28:], jbdFeatRevoke|jbdFeat64bit|jbdFeatCsumV3|jbdFeatFastComm)
	jsb[0x50] = jbdCRC32C
	be.PutUint32(jsb[0xFC:], crc32cSkip(^uint32(0), jsb[:1024], 0xFC, 4))
	writeFile(t, img, b)
	blk := filepath.Join(t.TempDir(), "blk")
	writeFile(t, blk, append([]byte("replayed\n"), make([]byte, 1024-9)...))
	debugfsScript(t, img, "jo", fmt.Sprintf("jw -b %d %s", ext[0].Off/1024, blk), "jw -r 5", "jc")
	if b, err = os.ReadFile(img); err != nil {
		t.Fatal(err)
	}
	jsb = b[jat(0):]
	tid := be.Uint32(jsb[0x18:]) + 2
	raw, err := fsys.rawInode(small)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint16(raw[0x1A:], 2) // links
	w := newFCWriter(1024)
	w.head(tid)
	w.dentry(fcLink, rootIno, uint32(small), "again")
	w.inode(uint32(small), raw)
	w.tail(tid)
	maxLen, nfc := int(be.Uint32(jsb[0x10:])), int(be.Uint32(jsb[0x54:]))
	for i, blk := range w.blocks {
		copy(b[jat(maxLen-nfc+1+i):], blk)
	}
	return b
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
		if name == "journal" {
			// Both the transaction and the fast commit replay.
			if err := fsys.JournalErr(); err != nil {
				t.Fatalf("journal seed: %v", err)
			}
			if got := readAll(t, fsys, "small"); got != "replayed\n" {
				t.Errorf("journal seed: small reads %q", got)
			}
			if a, b := lookupPath(t, fsys, "small"), lookupPath(t, fsys, "again"); a != b {
				t.Errorf("journal seed: again is inode %d, small %d", b, a)
			}
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
