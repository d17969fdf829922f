package ext4

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest"
)

// linkTree makes symlinks l<N> with targets of N bytes, for each length
// up to maxLen.
func linkTree(t *testing.T, maxLen int) string {
	t.Helper()
	src := t.TempDir()
	for _, n := range []int{1, 59, 60, 61, 200, 1000, 1023, 2048, 4095} {
		if n > maxLen {
			continue
		}
		target := strings.Repeat("d/", n/2) + strings.Repeat("x", n%2)
		if err := os.Symlink(target, filepath.Join(src, "l"+itoa(n))); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// TestSymlinks reads targets of every length class: fast (in i_block,
// under 60 bytes), inline (inline_data), and slow ones in a block up to
// 4095 bytes, on each block map and block size that can hold them.
func TestSymlinks(t *testing.T) {
	for _, v := range []struct {
		variant
		maxLen int // what the block size (or mke2fs) allows
	}{
		{variant{name: "ext4-4k", prog: "mkfs.ext4", size: "16M", opts: []string{"-b", "4096"}}, 4095},
		{variant{name: "ext4-64k", prog: "mkfs.ext4", size: "64M", opts: []string{"-b", "65536"}}, 4095},
		{variant{name: "ext4-1k", prog: "mkfs.ext4", size: "16M", opts: []string{"-b", "1024"}}, 1023},
		// mke2fs 1.47 fails to write a 4095-byte target with inline_data.
		{variant{name: "ext4-inline", prog: "mkfs.ext4", size: "16M", opts: []string{"-b", "4096", "-O", "inline_data"}}, 2048},
		{variant{name: "ext4-bigalloc", prog: "mkfs.ext4", size: "64M", opts: []string{"-b", "4096", "-O", "bigalloc", "-C", "16k"}}, 4095},
		{variant{name: "ext2-4k", prog: "mkfs.ext2", size: "16M", opts: []string{"-b", "4096"}}, 4095},
	} {
		t.Run(v.name, func(t *testing.T) {
			src := linkTree(t, v.maxLen)
			fsys := openImage(t, mkfs(t, v.prog, src, v.size, v.opts...))
			compareTree(t, fsys, src)
		})
	}
}

// TestSymlinkXattrBlockBigalloc: a fast symlink with an xattr block
// counts a whole cluster in i_blocks, and is still fast.
func TestSymlinkXattrBlockBigalloc(t *testing.T) {
	src := t.TempDir()
	if err := os.Symlink("short", filepath.Join(src, "short")); err != nil {
		t.Fatal(err)
	}
	img := mkfs(t, "mkfs.ext4", src, "64M", "-b", "4096", "-O", "bigalloc", "-C", "16k")
	val := filepath.Join(t.TempDir(), "val")
	writeFile(t, val, bytes.Repeat([]byte("v"), 3000))
	debugfsScript(t, img, "ea_set -f "+val+" /short trusted.big")
	if out := debugfsOut(t, img, "stat /short"); !strings.Contains(out, "Blockcount: 32") || !strings.Contains(out, `Fast link dest: "short"`) {
		t.Fatalf("not a fast symlink with a 16 KiB xattr cluster:\n%s", out)
	}
	fsys := openImage(t, img)
	if got, err := fsys.Readlink(lookupPath(t, fsys, "short")); got != "short" || err != nil {
		t.Errorf("Readlink = %q, %v", got, err)
	}
}

// TestSymlinkSizeHigh: i_size_high counts for a symlink, as e2fsck reads
// it (it calls such a symlink invalid; the kernel alone ignores the high
// word): the size is what both words say, and a target that long is
// damage, not a short target.
func TestSymlinkSizeHigh(t *testing.T) {
	src := linkTree(t, 200)
	img := mkfs(t, "mkfs.ext4", src, "16M", "-b", "4096")
	debugfsScript(t, img, "sif /l61 size 0x10000003d", "sif /l200 size 0x1000000c8")
	out := e2fsckN(t, readFile(t, img))
	for _, l := range []string{"l61", "l200"} {
		if !strings.Contains(out, "Symlink /"+l+" (inode") || !strings.Contains(out, "is invalid") {
			t.Fatalf("e2fsck -fn does not call /%s invalid:\n%s", l, out)
		}
	}
	fsys := openImage(t, img)
	for _, l := range []string{"l61", "l200"} {
		ino := lookupPath(t, fsys, l)
		a, err := fsys.Stat(ino)
		if want := 1<<32 + map[string]uint64{"l61": 61, "l200": 200}[l]; err != nil || a.Size != want {
			t.Errorf("%s: Stat size %d, %v", l, a.Size, err)
		}
		if got, err := fsys.Readlink(ino); !errors.Is(err, guest.ErrCorrupt) {
			t.Errorf("%s: Readlink = %d bytes, %v; want damage", l, len(got), err)
		}
	}
}
