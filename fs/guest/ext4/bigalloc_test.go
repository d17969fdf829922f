package ext4

import (
	"os"
	"testing"
)

// bigalloc allocates in clusters of several blocks; extents, inode
// tables and i_blocks still count in blocks. Groups hold clusters per
// group times the cluster ratio blocks, more than a block bitmap's bits.
func TestBigalloc(t *testing.T) {
	src := t.TempDir()
	buildTree(t, src, treeOpts{manyEntries: 100, special: os.Geteuid() == 0})
	for _, v := range []variant{
		{name: "4k-16k", prog: "mkfs.ext4", size: "96M", opts: []string{"-b", "4096", "-O", "bigalloc", "-C", "16k"}},
		{name: "1k-16k", prog: "mkfs.ext4", size: "96M", opts: []string{"-b", "1024", "-O", "bigalloc", "-C", "16k"}},
		{name: "4k-64k-nocsum", prog: "mkfs.ext4", size: "128M", opts: []string{"-b", "4096", "-O", "bigalloc,^metadata_csum", "-C", "64k"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			img := mkfs(t, v.prog, src, v.size, v.opts...)
			if out := runTool(t, "dumpe2fs", "-h", img); !regexpBigalloc.MatchString(out) {
				t.Fatalf("not a bigalloc filesystem:\n%s", out)
			}
			fsys := openImage(t, img)
			compareTree(t, fsys, src)
			checkAgainstDebugfs(t, fsys, img, "f4096", "hardlink", "sparse", "slowlink", "a/b/c/d", "f4097", "f"+itoa(1<<20+123))
		})
	}
}
