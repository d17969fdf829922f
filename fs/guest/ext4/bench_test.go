package ext4

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// BenchmarkReadAt reads a 32 MiB file in 128 KiB pieces.
func BenchmarkReadAt(b *testing.B) {
	src := b.TempDir()
	writeFile(b, filepath.Join(src, "big"), randBytes(rand.New(rand.NewPCG(1, 1)), 32<<20))
	fsys := openImage(b, mkfs(b, "mkfs.ext4", src, "96M"))
	ino, err := fsys.Lookup(fsys.Root(), "big")
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 128<<10)
	b.SetBytes(32 << 20)
	for b.Loop() {
		for off := int64(0); off < 32<<20; off += int64(len(buf)) {
			if _, err := fsys.ReadAt(ino, buf, off); err != nil {
				b.Fatal(err)
			}
		}
	}
}
